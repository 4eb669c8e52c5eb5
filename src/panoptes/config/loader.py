"""Reading a native YAML configuration: overrides, validation, errors that name their place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from panoptes.config.schema import SINK_KINDS, PipelineConfig
from panoptes.core.errors import ConfigError

_TAGS = {"uri-source", "test-source", *SINK_KINDS}


def format_place(loc: Iterable[str | int]) -> str:
    """``('sources', 1, 'uri-source', 'uri')`` → ``sources[1].uri`` (union tags dropped)."""
    place = ""
    previous: str | int | None = None
    for part in loc:
        if isinstance(part, int):
            place += f"[{part}]"
        elif isinstance(previous, int) and part in _TAGS:
            pass
        else:
            place += f".{part}" if place else str(part)
        previous = part
    return place


def _describe(errors: list[Any]) -> str:
    lines = []
    for error in errors:
        place = format_place(error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; `panoptes inspect KIND` lists the keys)"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{place}: {message}")
    return "\n".join(lines)


def parse_config(data: Mapping[str, Any], *, origin: str = "config") -> PipelineConfig:
    """Validate a config given as a dict; ConfigError lists every problem with its place."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping of sections, found {type(data).__name__}")
    try:
        return PipelineConfig.model_validate(dict(data))
    except ValidationError as error:
        errors = error.errors()
        problem = ConfigError(f"invalid configuration in {origin}:\n{_describe(errors)}")
        problem.places = [format_place(e["loc"]) for e in errors]
        raise problem from error


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _split_key(key: str) -> list[str | int]:
    """``infer[0].threshold`` or ``infer.0.threshold`` → ``['infer', 0, 'threshold']``."""
    parts: list[str | int] = []
    for chunk in key.replace("[", ".").replace("]", "").split("."):
        if not chunk:
            continue
        parts.append(int(chunk) if chunk.isdigit() else chunk)
    return parts


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value read as YAML) to a config dict, in place."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {override!r}: expected key.path=value")
        parts = _split_key(key.strip())
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            place = format_place(parts[: depth + 1])
            following = parts[depth + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError(f"--set {override!r}: {place} does not exist")
                node = node[part]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override!r}: {place} is not a section")
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last > len(node):
                raise ConfigError(f"--set {override!r}: {format_place(parts)} does not exist")
            if last == len(node):
                node.append(_parse_value(text))
            else:
                node[last] = _parse_value(text)
        else:
            if not isinstance(node, dict):
                raise ConfigError(
                    f"--set {override!r}: {format_place(parts[:-1])} is not a section"
                )
            node[last] = _parse_value(text)
    return data


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such config file: {path}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None


def load_config(
    path: str | Path, overrides: Iterable[str] = (), *, translations: list[Any] | None = None
) -> tuple[PipelineConfig, Path]:
    """Read, override and validate a config; returns it and the folder of relative paths.

    A deepstream-app configuration (INI, or its YAML form) is translated first, and the
    :class:`~panoptes.config.deepstream.translate.Translation`, with its notes on what is not
    honoured as it is, is added to ``translations``.
    """
    path = Path(path)
    data = read_native_or_deepstream(path, translations)
    apply_overrides(data, overrides)
    return parse_config(data, origin=str(path)), path.resolve().parent


def read_native_or_deepstream(path: Path, translations: list[Any] | None = None) -> dict[str, Any]:
    """The config at ``path`` as a native config dict (a DeepStream file translated)."""
    from panoptes.config.deepstream.translate import is_deepstream_config, translate_app_config

    if not path.is_file():
        raise ConfigError(f"no such config file: {path}")
    if is_deepstream_config(path):
        translation = translate_app_config(path)
        if translations is not None:
            translations.append(translation)
        return translation.config
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (sources, infer, sinks...)")
    return data
