"""Readers of DeepStream's configuration files: GLib key files (INI) and their YAML forms.

These read files exactly as DeepStream does and keep the line of every value, so errors can name
``app.txt:12 [source0] uri``; turning what they read into a panoptes pipeline is a separate step.

    config = read_config_file("deepstream_app_config.txt")        # or a .yml
    for number, source in config.groups_matching("source"):
        if source.enabled:
            uri = source.get_path("uri")                            # file:///abs/streams/x.mp4
    colors = config["primary-gie"].numbered_keys("bbox-border-color")
    tracker = read_yaml_document(config["tracker"].get_path("ll-config-file"))
"""

from panoptes.config.deepstream.keyfile import (
    ENABLE_DEFAULTS,
    Entry,
    Group,
    KeyFile,
    parse_keyfile,
    read_keyfile,
    resolve_path,
)
from panoptes.config.deepstream.yaml_forms import (
    YamlDocument,
    parse_yaml_document,
    parse_yaml_keyfile,
    read_config_file,
    read_yaml_document,
    read_yaml_keyfile,
)

__all__ = [
    "ENABLE_DEFAULTS",
    "Entry",
    "Group",
    "KeyFile",
    "YamlDocument",
    "parse_keyfile",
    "parse_yaml_document",
    "parse_yaml_keyfile",
    "read_config_file",
    "read_keyfile",
    "read_yaml_document",
    "read_yaml_keyfile",
    "resolve_path",
]
