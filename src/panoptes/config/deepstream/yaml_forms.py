"""DeepStream's YAML configurations.

Two kinds of YAML file turn up next to DeepStream's INI files:

- the YAML forms of the deepstream-app and Gst-nvinfer configurations (DeepStream 6.2 and later):
  top-level keys are the INI groups (``application:``, ``source:``, ``primary-gie:``, ``property:``,
  ``class-attrs-all:`` ...) and each holds flat ``key: value`` pairs, so they are presented as a
  :class:`~panoptes.config.deepstream.keyfile.KeyFile`. deepstream-app lists the sources of a YAML
  configuration in a CSV file (``source: {csv-file-path: sources_4.csv}``, a header row such as
  ``enable,type,uri,num-sources,gpu-id,cudadec-memtype`` and one row per source); each row becomes
  a group ``source0``, ``source1`` ... placed at its CSV line;
- the low-level tracker's ``ll-config-file`` (``config_tracker_NvDCF_perf.yml``): nested sections
  read by OpenCV-style code, starting with the OpenCV directive ``%YAML:1.0`` that PyYAML rejects.
  They are read into plain dicts (:class:`YamlDocument`), with the line of every key.

:func:`read_config_file` takes either INI or YAML application and nvinfer files.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from panoptes.config.deepstream.keyfile import Entry, Group, KeyFile, parse_keyfile, read_text
from panoptes.core.errors import ConfigError

_OPENCV_DIRECTIVE = re.compile(r"%YAML:[^\r\n]*")
_YAML_KEY_LINE = re.compile(r"[^=\s][^=]*:(\s|$)")
_NULL_TAG = "tag:yaml.org,2002:null"
_CSV_GROUP = "source"
_CSV_KEY = "csv-file-path"


def _prepare(text: str) -> str:
    """Drop a byte-order mark and blank out OpenCV's ``%YAML:1.0`` line (keeping line numbers)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    first, newline, rest = text.partition("\n")
    if _OPENCV_DIRECTIVE.fullmatch(first.rstrip("\r")):
        return newline + rest
    return text


def _yaml_error(error: yaml.YAMLError, name: str) -> ConfigError:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        problem = error.problem or str(error)
        return ConfigError(f"invalid YAML: {problem}", f"{name}:{error.problem_mark.line + 1}")
    return ConfigError(f"invalid YAML: {error}", name)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"the value {node.value!r}"


# The YAML forms of app and nvinfer configurations -----------------------------------------------


def parse_yaml_keyfile(text: str, name: str = "<string>", *, path: Path | None = None) -> KeyFile:
    """A YAML application or nvinfer configuration as groups of raw string values.

    Values keep the text written in the file (``1;0;0;1``, ``0.0039215697906911373``), so the
    typed getters read them as they read INI values; ``path`` is the file the text came from, which
    relative paths (and a sources CSV) resolve against.
    """
    loader = yaml.SafeLoader(_prepare(text))
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        raise _yaml_error(error, name) from None
    finally:
        loader.dispose()
    groups: dict[str, tuple[int, dict[str, Entry]]] = {}
    if root is not None:
        if not isinstance(root, MappingNode):
            raise ConfigError(
                f"expected groups such as `application:` or `property:`, got {_describe(root)}",
                f"{name}:{_line(root)}",
            )
        for key_node, value_node in root.value:
            group_name = _scalar_key(key_node, f"{name}:{_line(key_node)}")
            entries = groups.setdefault(group_name, (_line(key_node), {}))[1]
            entries.update(_group_entries(group_name, value_node, name))
    keyfile_groups = {
        group_name: Group(
            group_name, entries, file=name, line=line, config_path=path, dialect="yaml"
        )
        for group_name, (line, entries) in groups.items()
    }
    source = keyfile_groups.get(_CSV_GROUP)
    if source is not None and _CSV_KEY in source:
        keyfile_groups = _with_csv_sources(keyfile_groups, source)
    return KeyFile(keyfile_groups, name=name, path=path, dialect="yaml")


def _scalar_key(node: Node, where: str) -> str:
    if not isinstance(node, ScalarNode):
        raise ConfigError(f"expected a name, got {_describe(node)}", where)
    return str(node.value)


def _group_entries(group_name: str, node: Node, name: str) -> dict[str, Entry]:
    if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
        return {}
    if not isinstance(node, MappingNode):
        raise ConfigError(
            f"expected `key: value` lines under `{group_name}:`, got {_describe(node)}",
            f"{name}:{_line(node)} [{group_name}]",
        )
    entries: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        key = _scalar_key(key_node, f"{name}:{_line(key_node)} [{group_name}]")
        if not isinstance(value_node, ScalarNode):
            raise ConfigError(
                f"expected one value, got {_describe(value_node)}; DeepStream's YAML readers take "
                "a list as one string such as `1;0;0;1`",
                f"{name}:{_line(key_node)} [{group_name}] {key}",
            )
        raw = "" if value_node.tag == _NULL_TAG else str(value_node.value)
        entries[key] = Entry(key, raw, _line(key_node))
    return entries


def _with_csv_sources(groups: dict[str, Group], source: Group) -> dict[str, Group]:
    """One ``sourceN`` group per CSV row, right after ``source``, as deepstream-app reads them."""
    csv_path = Path(source.get_path(_CSV_KEY))
    try:
        text = read_text(csv_path, csv_path.name)
    except ConfigError as error:
        raise source.error(
            _CSV_KEY, f"cannot read the sources CSV {csv_path}: {error.reason}"
        ) from None
    rows = _csv_sources(text, csv_path.name, source.config_path)
    result: dict[str, Group] = {}
    for group_name, group in groups.items():
        result[group_name] = group
        if group is source:
            for row in rows:
                if row.name in groups:
                    raise row.error(
                        None, f"is also a group of {source.file}; list sources in one place"
                    )
                result[row.name] = row
    return result


def _csv_sources(text: str, csv_name: str, config_path: Path | None) -> list[Group]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[Group] = []
    try:
        for cells in reader:
            line = reader.line_num
            values = [cell.strip(" \t\r\n") for cell in cells]
            if not any(values):
                continue
            if header is None:
                if not all(values):
                    raise ConfigError(
                        f"the header row has an empty column name: {','.join(values)!r}",
                        f"{csv_name}:{line}",
                    )
                header = values
                continue
            if len(values) != len(header):
                raise ConfigError(
                    f"expected {len(header)} values ({','.join(header)}), got {len(values)}",
                    f"{csv_name}:{line}",
                )
            entries = {
                key: Entry(key, value, line) for key, value in zip(header, values, strict=True)
            }
            rows.append(
                Group(
                    f"{_CSV_GROUP}{len(rows)}",
                    entries,
                    file=csv_name,
                    line=line,
                    config_path=config_path,
                    dialect="yaml",
                )
            )
    except csv.Error as error:
        raise ConfigError(f"invalid CSV: {error}", f"{csv_name}:{reader.line_num}") from None
    if header is None:
        raise ConfigError("no header row (such as `enable,type,uri,num-sources`)", csv_name)
    return rows


def read_yaml_keyfile(path: str | os.PathLike[str]) -> KeyFile:
    """Read a YAML application or nvinfer configuration (see :func:`parse_yaml_keyfile`)."""
    file_path = Path(path)
    return parse_yaml_keyfile(read_text(file_path, file_path.name), file_path.name, path=file_path)


def looks_like_yaml(text: str) -> bool:
    """Whether the first line that is not blank or a ``#`` comment reads as YAML, not INI."""
    for line in text.removeprefix("\ufeff").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            return False
        if stripped.startswith(("%YAML", "---")):
            return True
        return _YAML_KEY_LINE.match(stripped) is not None
    return False


def read_config_file(path: str | os.PathLike[str]) -> KeyFile:
    """Read a DeepStream application or nvinfer configuration, INI or YAML.

    YAML when the name ends in ``.yml``/``.yaml`` (as DeepStream decides) or when the first line
    that is not a comment looks like YAML (``application:``); INI otherwise.
    """
    file_path = Path(path)
    text = read_text(file_path, file_path.name)
    if file_path.suffix.lower() in (".yml", ".yaml") or looks_like_yaml(text):
        return parse_yaml_keyfile(text, file_path.name, path=file_path)
    return parse_keyfile(text, file_path.name, path=file_path)


# Nested YAML: the tracker's ll-config-file -------------------------------------------------------


class _DocumentLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus what OpenCV-style files (``cv::FileStorage``) contain."""


# YAML 1.1 (PyYAML) wants a dot and a signed exponent in a float; OpenCV and yaml-cpp read `1e-3`.
_DocumentLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _construct_opencv_matrix(loader: yaml.SafeLoader, node: Node) -> list[list[Any]]:
    """``!!opencv-matrix {rows, cols, dt, data}`` → a list of ``rows`` lists."""
    if not isinstance(node, MappingNode):
        raise ConstructorError(None, None, "an !!opencv-matrix must be a mapping", node.start_mark)
    fields = loader.construct_mapping(node, deep=True)
    rows, cols, data = fields.get("rows"), fields.get("cols"), fields.get("data")
    channels_text = re.match(r"[0-9]*", str(fields.get("dt", "")))
    channels = int(channels_text.group() or 1) if channels_text else 1
    if (
        not isinstance(rows, int)
        or not isinstance(cols, int)
        or not isinstance(data, list)
        or rows < 0
        or len(data) != rows * cols * channels
    ):
        raise ConstructorError(
            None,
            None,
            "an !!opencv-matrix needs integer rows and cols and rows*cols values in data",
            node.start_mark,
        )
    width = cols * channels
    return [data[row * width : (row + 1) * width] for row in range(rows)]


_DocumentLoader.add_constructor("tag:yaml.org,2002:opencv-matrix", _construct_opencv_matrix)


@dataclass(frozen=True)
class YamlDocument:
    """A nested YAML file as plain dicts and lists, with the line of each key and list item.

    ``lines`` maps a key path such as ``("VisualTracker", "filterLr")`` (list items by index) to
    its 1-based line; :meth:`place` turns one into ``tracker.yml:23 VisualTracker.filterLr``.
    """

    name: str
    path: Path | None
    data: dict[str, Any]
    lines: Mapping[tuple[Any, ...], int]

    def line(self, *keys: Any) -> int | None:
        """The line of the key path, or None when it is not in the file."""
        return self.lines.get(keys)

    def place(self, *keys: Any) -> str:
        """``tracker.yml:23 VisualTracker.filterLr`` (the file alone for an unknown path)."""
        text = ""
        for key in keys:
            text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
        line = self.line(*keys)
        where = f"{self.name}:{line}" if line is not None else self.name
        return f"{where} {text}" if text else where

    def error(self, keys: tuple[Any, ...], message: str) -> ConfigError:
        """A ConfigError placed at the key path."""
        return ConfigError(message, self.place(*keys))


def parse_yaml_document(
    text: str, name: str = "<string>", *, path: Path | None = None
) -> YamlDocument:
    """Parse a nested YAML file such as a tracker ``ll-config-file`` (``%YAML:1.0`` allowed).

    Values are typed as YAML 1.1 types them (``1`` int, ``0.075`` and ``1e-3`` float);
    ``!!opencv-matrix`` values become lists of rows. Bad YAML is a ConfigError at its line.
    """
    loader = _DocumentLoader(_prepare(text))
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
        lines: dict[tuple[Any, ...], int] = {}
        if root is not None:
            _record_lines(loader, root, (), lines)
    except yaml.YAMLError as error:
        raise _yaml_error(error, name) from None
    finally:
        loader.dispose()
    if root is None:
        data = {}
    elif not isinstance(data, dict):
        raise ConfigError(
            f"expected sections such as `BaseConfig:`, got {_describe(root)}",
            f"{name}:{_line(root)}",
        )
    return YamlDocument(name=name, path=path, data=data, lines=lines)


def _record_lines(
    loader: yaml.SafeLoader, node: Node, prefix: tuple[Any, ...], lines: dict[tuple[Any, ...], int]
) -> None:
    if node.tag == "tag:yaml.org,2002:opencv-matrix":
        return
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            lines[(*prefix, key)] = _line(key_node)
            _record_lines(loader, value_node, (*prefix, key), lines)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*prefix, index)] = _line(item)
            _record_lines(loader, item, (*prefix, index), lines)


def read_yaml_document(path: str | os.PathLike[str]) -> YamlDocument:
    """Read a nested YAML file such as a tracker ``ll-config-file``."""
    file_path = Path(path)
    text = read_text(file_path, file_path.name)
    return parse_yaml_document(text, file_path.name, path=file_path)
