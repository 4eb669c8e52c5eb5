"""Configuration: the typed schema and the loaders."""

from panoptes.config.loader import load_config, parse_config
from panoptes.config.schema import PipelineConfig

__all__ = ["PipelineConfig", "load_config", "parse_config"]
