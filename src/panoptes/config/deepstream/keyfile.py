"""DeepStream's INI files, read the way GLib's ``GKeyFile`` reads them.

deepstream-app, Gst-nvinfer, Gst-nvdspreprocess and the other DeepStream readers load their
``.txt`` configurations with ``g_key_file_load_from_file`` and read every key with a typed getter
(``g_key_file_get_integer``, ``..._get_double_list`` ...). Python's ``configparser`` differs from
GLib in ways that change what real files mean (``;`` comments, ``%`` interpolation, case folding,
duplicate handling, no typed lists), so this module reimplements GLib's rules; each rule below was
checked against GLib 2.74 itself:

- only a line whose first non-blank character is ``#`` is a comment, and so is a blank line; a
  ``;`` line is a parse error (or, when it holds a ``=``, a key named ``; ...``);
- ``[group]`` headers may be indented and followed by blanks, nothing else (``[osd] # x`` is an
  error); group and key names are case-sensitive; blanks around ``=`` are dropped but blanks at the
  end of a value are kept; a repeated key keeps its last value; a repeated group is merged;
- lines end at ``\\n``; one ``\\r`` before it is dropped (CRLF files); the last line needs no end;
- ``g_key_file_get_integer`` reads a decimal ``int32`` and stops at the first blank, so
  ``type=3 # file`` is 3, while ``3abc`` is an error; booleans are ``true``/``false``/``1``/``0``
  (case-sensitive, trailing blanks allowed); doubles follow C's ``strtod`` with nothing after the
  number, so ``0.5 # x`` is an error there;
- strings undo the escapes ``\\s \\n \\t \\r \\\\`` (and ``\\;`` inside a list); lists split at
  ``;`` and drop one empty item at the end (``1;1;1;1;`` has four items, ``0;`` has one).

One deliberate difference: GLib rejects a file that starts with a UTF-8 byte-order mark; it is
accepted here, because Windows editors add it and it cannot change what the file means.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, overload

from panoptes.core.errors import ConfigError

Dialect = Literal["ini", "yaml"]
GroupOrder = Literal["number", "file"]

_T = TypeVar("_T")
_V = TypeVar("_V")

# g_ascii_isspace: the only blanks GLib strips or stops at.
_BLANKS = " \t\n\r\f\v"
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_UINT64_MAX = 2**64 - 1

_INTEGER = re.compile(rf"[{_BLANKS}]*([+-]?[0-9]+)(?:[{_BLANKS}].*)?", re.DOTALL)
_UINT64 = re.compile(rf"[{_BLANKS}]*\+?([0-9]+)")
_DECIMAL = re.compile(rf"[{_BLANKS}]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEXADECIMAL = re.compile(
    rf"[{_BLANKS}]*[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)
_SPECIAL = re.compile(rf"[{_BLANKS}]*([+-]?)(inf|infinity|nan)", re.IGNORECASE)
_NUMBERED = re.compile(r"(.*?)([0-9]+)")
_LOCALIZED_KEY = re.compile(r"[^\[\]]+\[[^\[\]]+\]")
_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_COMMENT_HINT = " (put a comment on a line of its own: GLib reads `#` after a value as part of it)"

# The YAML readers (yaml-cpp) also take YAML's own words for booleans.
_YAML_TRUE = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "1"})
_YAML_FALSE = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "0"})

ENABLE_DEFAULTS: Mapping[str, bool] = {
    # deepstream-app allocates its configuration zeroed and reads `enable` as an integer, so these
    # groups are off unless they say `enable=1` (any non-zero integer switches them on).
    "source": False,
    "sink": False,
    "primary-gie": False,
    "secondary-gie": False,
    "tracker": False,
    "osd": False,
    "tiled-display": False,
    "pre-process": False,
    "message-converter": False,
    "message-consumer": False,
    "ds-example": False,
    "nvds-analytics": False,
    "dewarper": False,
    "img-save": False,
    # These have no `enable` switch: the group's presence is what counts.
    "application": True,
    "tests": True,
    "streammux": True,
    "source-list": True,
    "source-attr-all": True,
    "property": True,
}
"""Whether a group without an ``enable`` key is on, by group kind (its name less a trailing number).

Kinds not listed have no ``enable`` switch in DeepStream and count as on.
"""


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED = _Missing()


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``key=value`` line: the value exactly as written (after the blanks around ``=``)."""

    key: str
    raw: str
    line: int


def group_kind(name: str) -> str:
    """``source12`` → ``source``; ``secondary-gie0`` → ``secondary-gie``; ``osd`` → ``osd``."""
    match = _NUMBERED.fullmatch(name)
    return match.group(1) if match else name


def group_number(name: str) -> int | None:
    """``source12`` → 12; ``osd`` → None."""
    match = _NUMBERED.fullmatch(name)
    return int(match.group(2)) if match else None


class Group(Mapping[str, Entry]):
    """One ``[group]``: its entries by key, in the order they first appear.

    ``file`` and ``line`` say where the group is written (for messages); ``config_path`` is the
    configuration file that relative paths in it are relative to. They differ for the sources of a
    YAML application config, which are rows of a CSV file but resolve paths like the YAML file.
    """

    __slots__ = ("_entries", "config_path", "dialect", "file", "line", "name")

    def __init__(
        self,
        name: str,
        entries: Mapping[str, Entry],
        *,
        file: str,
        line: int,
        config_path: Path | None = None,
        dialect: Dialect = "ini",
    ) -> None:
        self.name = name
        self._entries = dict(entries)
        self.file = file
        self.line = line
        self.config_path = config_path
        self.dialect: Dialect = dialect

    def __getitem__(self, key: str) -> Entry:
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Group({self.name!r}, {len(self)} keys, {self.file}:{self.line})"

    @property
    def kind(self) -> str:
        """The name less its trailing number: ``sink``, ``secondary-gie``, ``osd``."""
        return group_kind(self.name)

    @property
    def number(self) -> int | None:
        """The trailing number of a numbered group (``sink2`` → 2), else None."""
        return group_number(self.name)

    @property
    def enabled(self) -> bool:
        """``enable`` read as deepstream-app reads it (a non-zero integer), or the kind's default.

        See :data:`ENABLE_DEFAULTS`: ``[osd]``, ``[tracker]``, ``[sinkN]`` ... without ``enable``
        are off; ``[application]``, ``[tests]``, ``[streammux]`` have no switch and are on.
        """
        if "enable" not in self:
            return ENABLE_DEFAULTS.get(self.kind, True)
        try:
            return self.get_integer("enable") != 0
        except ConfigError as error:
            raise self.error(
                "enable", f"{error.reason}; DeepStream reads `enable` as a number: 1 on, 0 off"
            ) from None

    def place(self, key: str | None = None) -> str:
        """``app.txt:12 [source0] uri``: the key's line, or the group's line without a key."""
        if key is None:
            return f"{self.file}:{self.line} [{self.name}]"
        line = self._entries[key].line if key in self._entries else self.line
        return f"{self.file}:{line} [{self.name}] {key}"

    def error(self, key: str | None, message: str) -> ConfigError:
        """A ConfigError placed at ``key`` (or at the group)."""
        return ConfigError(message, self.place(key))

    def numbered_keys(self, prefix: str) -> list[tuple[int, Entry]]:
        """Keys ``prefix<N>`` with any N, sorted by N (``bbox-border-color0``, ``...17``).

        The bare ``prefix`` (DeepStream's "all classes" form) is not included; read it by name.
        """
        found: dict[int, Entry] = {}
        for key, entry in self._entries.items():
            suffix = key[len(prefix) :]
            if key.startswith(prefix) and suffix.isdigit() and suffix.isascii():
                number = int(suffix)
                if number in found:
                    raise self.error(
                        key, f"repeats number {number} of {prefix}{number}; keep one of them"
                    )
                found[number] = entry
        return sorted(found.items())

    # Typed getters. Without a default a missing key is an error; with one, the default is returned.

    @overload
    def get_value(self, key: str) -> str: ...
    @overload
    def get_value(self, key: str, default: _T) -> str | _T: ...
    def get_value(self, key: str, default: object = _REQUIRED) -> object:
        """The value as written, escapes and all (``g_key_file_get_value``)."""
        return self._typed(key, default, lambda raw: raw)

    @overload
    def get_string(self, key: str) -> str: ...
    @overload
    def get_string(self, key: str, default: _T) -> str | _T: ...
    def get_string(self, key: str, default: object = _REQUIRED) -> object:
        """The value with GLib's escapes undone (``g_key_file_get_string``); YAML: verbatim."""
        if self.dialect == "yaml":
            return self._typed(key, default, lambda raw: raw)
        return self._typed(key, default, lambda raw: _unescape(raw, split=False)[0])

    @overload
    def get_integer(self, key: str) -> int: ...
    @overload
    def get_integer(self, key: str, default: _T) -> int | _T: ...
    def get_integer(self, key: str, default: object = _REQUIRED) -> object:
        """A 32-bit integer as ``g_key_file_get_integer`` reads it (``3 # file`` → 3)."""
        return self._typed(key, default, parse_integer)

    @overload
    def get_uint64(self, key: str) -> int: ...
    @overload
    def get_uint64(self, key: str, default: _T) -> int | _T: ...
    def get_uint64(self, key: str, default: object = _REQUIRED) -> object:
        """An unsigned 64-bit integer (``g_key_file_get_uint64``: nothing may follow it)."""
        return self._typed(key, default, parse_uint64)

    @overload
    def get_boolean(self, key: str) -> bool: ...
    @overload
    def get_boolean(self, key: str, default: _T) -> bool | _T: ...
    def get_boolean(self, key: str, default: object = _REQUIRED) -> object:
        """``true``/``1`` or ``false``/``0`` (``g_key_file_get_boolean``); YAML adds yes, off ..."""
        parse = parse_yaml_boolean if self.dialect == "yaml" else parse_boolean
        return self._typed(key, default, parse)

    @overload
    def get_double(self, key: str) -> float: ...
    @overload
    def get_double(self, key: str, default: _T) -> float | _T: ...
    def get_double(self, key: str, default: object = _REQUIRED) -> object:
        """A number as ``g_key_file_get_double`` reads it (C ``strtod``, nothing after it)."""
        return self._typed(key, default, parse_double)

    @overload
    def get_string_list(self, key: str) -> list[str]: ...
    @overload
    def get_string_list(self, key: str, default: _T) -> list[str] | _T: ...
    def get_string_list(self, key: str, default: object = _REQUIRED) -> object:
        """Items split at ``;`` (``g_key_file_get_string_list``); one trailing ``;`` is allowed."""
        return self._typed(key, default, self._split)

    @overload
    def get_integer_list(self, key: str) -> list[int]: ...
    @overload
    def get_integer_list(self, key: str, default: _T) -> list[int] | _T: ...
    def get_integer_list(self, key: str, default: object = _REQUIRED) -> object:
        """``operate-on-class-ids=0;2;`` → [0, 2] (``g_key_file_get_integer_list``)."""
        return self._typed(key, default, lambda raw: _parse_items(self._split(raw), parse_integer))

    @overload
    def get_double_list(self, key: str) -> list[float]: ...
    @overload
    def get_double_list(self, key: str, default: _T) -> list[float] | _T: ...
    def get_double_list(self, key: str, default: object = _REQUIRED) -> object:
        """``text-color=1;1;1;1;`` → [1.0, 1.0, 1.0, 1.0] (``g_key_file_get_double_list``)."""
        return self._typed(key, default, lambda raw: _parse_items(self._split(raw), parse_double))

    @overload
    def get_path(self, key: str) -> str: ...
    @overload
    def get_path(self, key: str, default: _T) -> str | _T: ...
    def get_path(self, key: str, default: object = _REQUIRED) -> object:
        """A path or URI made absolute against the configuration file (see :func:`resolve_path`)."""
        return self._typed(key, default, self._resolve)

    def _resolve(self, raw: str) -> str:
        value = raw if self.dialect == "yaml" else _unescape(raw, split=False)[0]
        if self.config_path is None:
            raise ValueError("cannot resolve a relative path: the config was not read from a file")
        return resolve_path(value, relative_to_file=self.config_path)

    def _split(self, raw: str) -> list[str]:
        if self.dialect == "yaml":
            # DeepStream's YAML readers split at every `;`, with no escapes.
            items = raw.split(";")
            return items[:-1] if items[-1] == "" else items
        return _unescape(raw, split=True)

    def _typed(self, key: str, default: object, parse: Callable[[str], _V]) -> _V | object:
        entry = self._entries.get(key)
        if entry is None:
            if isinstance(default, _Missing):
                raise self.error(key, "required key is missing")
            return default
        try:
            return parse(entry.raw)
        except ValueError as error:
            raise self.error(key, str(error)) from None


class KeyFile(Mapping[str, Group]):
    """A whole configuration file: its groups by name, in the order they first appear.

    ``name`` is what messages call the file (its base name); ``path`` is the file itself, against
    whose folder relative paths resolve. The YAML forms of DeepStream's configurations are presented
    the same way (``dialect="yaml"``), so a translator can treat both alike.
    """

    __slots__ = ("_groups", "dialect", "name", "path")

    def __init__(
        self,
        groups: Mapping[str, Group],
        *,
        name: str,
        path: Path | None = None,
        dialect: Dialect = "ini",
    ) -> None:
        self._groups = dict(groups)
        self.name = name
        self.path = path
        self.dialect: Dialect = dialect

    def __getitem__(self, name: str) -> Group:
        return self._groups[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def __repr__(self) -> str:
        return f"KeyFile({self.name!r}, groups={list(self._groups)})"

    def require(self, name: str) -> Group:
        """The group, or a ConfigError naming the file when it is missing."""
        group = self._groups.get(name)
        if group is None:
            raise ConfigError(f"missing group [{name}]", self.name)
        return group

    def groups_matching(
        self, prefix: str, *, order: GroupOrder = "number"
    ) -> list[tuple[int, Group]]:
        """Groups named ``prefix<N>`` with any N (``source0``, ``source17``) with their numbers.

        Sorted by N, or with ``order="file"`` in the order the file lists them: deepstream-app gives
        sources, sinks and secondary GIEs their ids in file order, counting only enabled groups, and
        uses N only to tell groups apart. Two groups with the same N (``source1``, ``source01``)
        are an error, as in deepstream-app.
        """
        found: list[tuple[int, Group]] = []
        seen: dict[int, Group] = {}
        for name, group in self._groups.items():
            match = _NUMBERED.fullmatch(name)
            if match is None or match.group(1) != prefix:
                continue
            number = int(match.group(2))
            if number in seen:
                raise group.error(
                    None, f"has the same number as [{seen[number].name}]; give each group its own"
                )
            seen[number] = group
            found.append((number, group))
        if order == "number":
            found.sort(key=lambda item: item[0])
        return found


def resolve_path(value: str, relative_to_file: str | os.PathLike[str]) -> str:
    """A path or URI from a config, made absolute the way DeepStream does it.

    - ``/abs/model.onnx`` stays as it is;
    - ``models/x.onnx`` is relative to the folder of the file that names it (after following
      symbolic links to that file, as ``realpath`` does);
    - ``file://../../streams/x.mp4`` is relative too (DeepStream strips ``file://`` and resolves
      the rest), and comes back as ``file:///abs/.../streams/x.mp4``; so is ``file://host/x``,
      which DeepStream also reads as a relative path;
    - ``file:///abs`` and ``file:/abs`` give ``file:///abs``;
    - other URIs (``rtsp://``, ``http://``, ``csi:0``) come back untouched.
    """
    if value.startswith("file://"):
        return "file://" + _absolute(value[len("file://") :], relative_to_file)
    if value.startswith("file:/"):
        return "file://" + value[len("file:") :]
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
        return value
    return _absolute(value, relative_to_file)


def _absolute(path: str, relative_to_file: str | os.PathLike[str]) -> str:
    if path.startswith("/"):
        return path
    folder = os.path.dirname(os.path.realpath(relative_to_file))
    return os.path.realpath(os.path.join(folder, path))


def parse_integer(raw: str) -> int:
    """``g_key_file_get_integer``: blanks, a sign, decimal digits, then nothing or a blank."""
    match = _INTEGER.fullmatch(raw)
    if match is None:
        raise ValueError(f"expected an integer, got {raw!r}")
    value = int(match.group(1))
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"integer out of range (32 bits), got {raw!r}")
    return value


def parse_uint64(raw: str) -> int:
    """``g_key_file_get_uint64``: decimal digits and nothing after them."""
    match = _UINT64.fullmatch(raw)
    if match is None:
        raise ValueError(f"expected a non-negative integer, got {raw!r}" + _hint(raw))
    value = int(match.group(1))
    # GLib wraps negative numbers and saturates large ones; saying so is more useful.
    if value > _UINT64_MAX:
        raise ValueError(f"integer out of range (64 bits), got {raw!r}")
    return value


def parse_boolean(raw: str) -> bool:
    """``g_key_file_get_boolean``: ``true``, ``1``, ``false`` or ``0``, then only blanks."""
    word = raw.rstrip(_BLANKS)
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise ValueError(f"expected a boolean (1, 0, true or false), got {raw!r}" + _hint(raw))


def parse_yaml_boolean(raw: str) -> bool:
    """A boolean in DeepStream's YAML forms: GLib's words and YAML's (``yes``, ``off`` ...)."""
    if raw in _YAML_TRUE:
        return True
    if raw in _YAML_FALSE:
        return False
    raise ValueError(f"expected a boolean (1, 0, true or false), got {raw!r}")


def parse_double(raw: str) -> float:
    """``g_key_file_get_double``: C's ``strtod`` in the C locale, with nothing after the number."""
    if _DECIMAL.fullmatch(raw):
        return float(raw.lstrip(_BLANKS))
    if _HEXADECIMAL.fullmatch(raw):
        return float.fromhex(raw.lstrip(_BLANKS))
    special = _SPECIAL.fullmatch(raw)
    if special:
        sign = -1.0 if special.group(1) == "-" else 1.0
        return sign * (math.nan if special.group(2).lower() == "nan" else math.inf)
    raise ValueError(f"expected a number, got {raw!r}" + _hint(raw))


def _hint(raw: str) -> str:
    return _COMMENT_HINT if "#" in raw else ""


def _parse_items(items: list[str], parse: Callable[[str], _V]) -> list[_V]:
    values = []
    for index, item in enumerate(items):
        try:
            values.append(parse(item))
        except ValueError as error:
            raise ValueError(f"item {index + 1} of {len(items)}: {error}") from None
    return values


def _unescape(raw: str, *, split: bool) -> list[str]:
    """GLib's ``g_key_file_parse_value_as_string``: escapes undone; with ``split``, the items."""
    items: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            index += 1
            if index == len(raw):
                raise ValueError(f"ends with an escape character (write \\\\ for one), got {raw!r}")
            escaped = raw[index]
            if escaped in _ESCAPES:
                current.append(_ESCAPES[escaped])
            elif split and escaped == ";":
                current.append(";")
            else:
                raise ValueError(f"invalid escape sequence \\{escaped} in {raw!r}")
        elif split and char == ";":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    if not split:
        return ["".join(current)]
    # GLib keeps an empty item between separators but not one after the last separator.
    if current:
        items.append("".join(current))
    return items


def parse_keyfile(text: str, name: str = "<string>", *, path: Path | None = None) -> KeyFile:
    """Parse INI text as GLib does; ConfigError names ``name:line`` for each malformed line.

    ``path`` is the file the text came from (relative paths in it resolve against its folder).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    groups: dict[str, tuple[int, dict[str, Entry]]] = {}
    current: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        stripped = line.lstrip(_BLANKS)
        where = f"{name}:{number}" + (f" [{current}]" if current is not None else "")
        if not stripped or stripped.startswith("#"):
            continue
        group_name = _group_header(stripped)
        if group_name is not None:
            if not group_name or any(c in "[]" or ord(c) < 0x20 or c == "\x7f" for c in group_name):
                raise ConfigError(f"invalid group name [{group_name}]", f"{name}:{number}")
            current = group_name
            groups.setdefault(group_name, (number, {}))
            continue
        separator = stripped.find("=")
        if separator <= 0:
            hint = "; GLib comments start with `#`, not `;`" if stripped.startswith(";") else ""
            raise ConfigError(
                f"expected `key=value`, `[group]` or a `#` comment, got {stripped!r}{hint}", where
            )
        key = stripped[:separator].rstrip(_BLANKS)
        value = stripped[separator + 1 :].lstrip(_BLANKS)
        if current is None:
            raise ConfigError(
                f"key {key!r} comes before any [group]; put it under one", f"{name}:{number}"
            )
        if "[" in key or "]" in key:
            if _LOCALIZED_KEY.fullmatch(key):
                # A translation (`Name[de]=...`): GLib keeps only the user's locale and DeepStream
                # never asks for one, so it is dropped as GLib drops foreign ones.
                continue
            raise ConfigError(f"invalid key name {key!r}", where)
        groups[current][1][key] = Entry(key, value, number)
    return KeyFile(
        {
            group_name: Group(group_name, entries, file=name, line=line, config_path=path)
            for group_name, (line, entries) in groups.items()
        },
        name=name,
        path=path,
    )


def _group_header(stripped: str) -> str | None:
    """``[name]`` followed only by blanks gives ``name``; anything else is not a header."""
    if not stripped.startswith("["):
        return None
    end = stripped.find("]")
    if end < 0 or stripped[end + 1 :].strip(" \t"):
        return None
    return stripped[1:end]


def read_text(path: Path, name: str) -> str:
    """A config file's text; ConfigError when it cannot be read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the file: {error.strerror or error}", str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", f"{name}:{line}") from None


def read_keyfile(path: str | os.PathLike[str]) -> KeyFile:
    """Read an INI configuration file (``deepstream_app_config.txt``, ``config_infer_*.txt``)."""
    file_path = Path(path)
    return parse_keyfile(read_text(file_path, file_path.name), file_path.name, path=file_path)
