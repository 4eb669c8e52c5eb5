"""DeepStream's nvdsanalytics configuration (``config_nvdsanalytics.txt``) read into the
``analytics`` element's properties.

The file is read as Gst-nvdsanalytics reads it (GLib key file, or its YAML form)::

    [property]
    enable=1
    config-width=1920          # the rules' coordinates are pixels of a frame this size
    config-height=1080
    osd-mode=2                 # 0 draw nothing, 1 zones and lines, 2 also the counts
    display-font-size=12

    [roi-filtering-stream-0]   # zones of stream 0
    enable=1
    roi-RF=295;643;579;634;642;913;56;828
    inverse-roi=0
    class-id=-1

    [overcrowding-stream-1]
    enable=1
    roi-OC=295;643;579;634;642;913;56;828
    object-threshold=3
    time-threshold=2000

    [line-crossing-stream-0]   # direction x1;y1;x2;y2, then the line x1;y1;x2;y2
    enable=1
    line-crossing-Exit=789;672;1084;900;851;773;1203;732
    class-id=0
    extended=0
    mode=loose

    [direction-detection-stream-0]
    enable=1
    direction-South=284;840;360;662
    class-id=0

Defaults are the plugin's: groups are off without ``enable=1``, lines are ``extended`` and
``loose`` unless told, a line counts only crossings along its direction (``in``),
``object-threshold`` is 1. Keys that are not honoured as they are get a note each
(:class:`~panoptes.config.deepstream.translate.Note`).
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from panoptes.config.deepstream.keyfile import Group
from panoptes.config.deepstream.yaml_forms import read_config_file
from panoptes.core.errors import ConfigError
from panoptes.elements.analytics import AnalyticsProperties

if TYPE_CHECKING:
    from panoptes.config.deepstream.translate import Note

_logger = logging.getLogger("panoptes.config.deepstream")

_KINDS = {
    "roi-filtering-stream-": "rois",
    "overcrowding-stream-": "overcrowding",
    "line-crossing-stream-": "lines",
    "direction-detection-stream-": "directions",
}
_STREAM_GROUP = re.compile(
    r"(roi-filtering-stream-|overcrowding-stream-|line-crossing-stream-|"
    r"direction-detection-stream-)(.*)"
)
_MODES = ("loose", "balanced", "strict")

# [property] keys panoptes does not apply, with what happens instead.
_PROPERTY_UNSUPPORTED = {
    "obj-cnt-win-in-ms": "the per-class object counts of the frame are not smoothed over time",
    "display-obj-cnt": "the per-class object counts are not drawn",
}


def read_nvdsanalytics_config(
    path: str | os.PathLike[str], *, notes: list[Note] | None = None
) -> AnalyticsProperties:
    """The analytics element's properties for a ``config_nvdsanalytics.txt`` (INI or YAML).

    Each key or group that is not honoured as it is gets a
    :class:`~panoptes.config.deepstream.translate.Note` appended to ``notes``
    (``config_nvdsanalytics.txt:9 [property] display-obj-cnt: unsupported: ...``); without
    ``notes`` they are logged as warnings. A malformed value raises :class:`ConfigError` placed
    at ``file:line [group] key``.
    """
    from panoptes.config.deepstream.translate import Note

    found: list[Note] = []
    properties = _Reader(Path(path), found, Note).read()
    if notes is None:
        for note in found:
            _logger.warning("%s", note)
    else:
        notes.extend(found)
    return properties


class _Reader:
    def __init__(self, path: Path, notes: list[Note], note_type: type[Note]) -> None:
        self.path = path
        self.notes = notes
        self._note_type = note_type

    def note(
        self, status: Literal["approximated", "unsupported", "unknown"], place: str, text: str
    ) -> None:
        self.notes.append(self._note_type(status, place, text))

    def read(self) -> AnalyticsProperties:
        config = read_config_file(self.path)
        prop = config.require("property")
        data: dict[str, Any] = self._property(prop)
        # Per stream id, per kind: (rule dict, group, key) in file order.
        rules: dict[int, dict[str, list[tuple[dict[str, Any], Group, str]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for group in config.values():
            if group.name == "property":
                continue
            match = _STREAM_GROUP.fullmatch(group.name)
            if match is None:
                self.note("unknown", group.place(), "unknown group, not used")
                continue
            prefix, number = match.groups()
            if not (number.isdigit() and number.isascii()):
                raise group.error(
                    None, f"expected a stream number after {prefix!r}, as in [{prefix}0]"
                )
            kind = _KINDS[prefix]
            read = getattr(self, f"_{kind}")
            group_rules: list[tuple[dict[str, Any], str]] = read(group)
            if not group.get_boolean("enable", False):
                continue
            rules[int(number)][kind] += [(rule, group, key) for rule, key in group_rules]
        streams = []
        for source_id in sorted(rules):
            entry: dict[str, Any] = {"source": source_id}
            taken: set[str] = set()
            for kind, found in rules[source_id].items():
                entry[kind] = []
                for rule, group, key in found:
                    name = rule["name"]
                    if name in taken:
                        # DeepStream keeps each kind's labels apart; here every rule of a
                        # stream is one key of frame.meta.analytics.
                        renamed = f"{name} ({kind})"
                        suffix = 2
                        while renamed in taken:
                            renamed, suffix = f"{name} ({kind} {suffix})", suffix + 1
                        self.note(
                            "approximated",
                            group.place(key),
                            f"another rule of stream {source_id} is named {name!r}; this one is "
                            f"named {renamed!r}",
                        )
                        rule["name"] = name = renamed
                    taken.add(name)
                    entry[kind].append(rule)
            streams.append(entry)
        if not data.pop("enable"):
            streams = []
        data["streams"] = streams
        try:
            return AnalyticsProperties.model_validate(data)
        except ValidationError as error:
            raise ConfigError(_first_error(error), self.path.name) from None

    def _property(self, prop: Group) -> dict[str, Any]:
        data: dict[str, Any] = {
            "enable": prop.get_boolean("enable"),
            "config_width": _positive(prop, "config-width"),
            "config_height": _positive(prop, "config-height"),
        }
        osd_mode = prop.get_integer("osd-mode", 2)
        if not 0 <= osd_mode <= 2:
            raise prop.error(
                "osd-mode",
                f"expected 0 (draw nothing), 1 (zones and lines) or 2 (and counts), got {osd_mode}",
            )
        data["draw"] = osd_mode > 0
        data["draw_counts"] = osd_mode == 2
        font_size = prop.get_integer("display-font-size", 0)
        if font_size < 0:
            raise prop.error("display-font-size", f"expected a size of 0 or more, got {font_size}")
        if font_size:
            # As the osd's text-size: OpenCV's font scale is about a 30th of a point size.
            data["font_scale"] = round(font_size / 30, 3)
        known = {"enable", "config-width", "config-height", "osd-mode", "display-font-size"}
        for key in prop:
            if key in _PROPERTY_UNSUPPORTED:
                self.note("unsupported", prop.place(key), _PROPERTY_UNSUPPORTED[key])
            elif key not in known:
                self.note("unknown", prop.place(key), "unknown key, not used")
        return data

    # -- one group of each kind: its rules, as (rule dict, key) ---------------------------------

    def _rois(self, group: Group) -> list[tuple[dict[str, Any], str]]:
        common = {"inverse": group.get_boolean("inverse-roi", False), **self._classes(group)}
        rules = [
            ({"name": name, "polygon": _polygon(group, key), **common}, key)
            for name, key in self._named(group, "roi-", ("enable", "class-id", "inverse-roi"))
        ]
        return self._validated(group, rules, "roi-NAME=x1;y1;x2;y2;x3;y3...", _roi)

    def _overcrowding(self, group: Group) -> list[tuple[dict[str, Any], str]]:
        threshold = group.get_integer("object-threshold", 1)
        time_threshold = group.get_integer("time-threshold", 0)
        for key, value in (("object-threshold", threshold), ("time-threshold", time_threshold)):
            if value < 0:
                raise group.error(key, f"expected 0 or more, got {value}")
        common = {
            "threshold": threshold,
            "time_threshold_ms": time_threshold,
            **self._classes(group),
        }
        skip = ("enable", "class-id", "object-threshold", "time-threshold")
        rules = [
            ({"name": name, "polygon": _polygon(group, key), **common}, key)
            for name, key in self._named(group, "roi-", skip)
        ]
        return self._validated(group, rules, "roi-NAME=x1;y1;x2;y2;x3;y3...", _overcrowding)

    def _lines(self, group: Group) -> list[tuple[dict[str, Any], str]]:
        common = {
            "extended": group.get_boolean("extended", True),
            "mode": self._mode(group, "loose"),
            "count": ["in"],
            **self._classes(group),
        }
        rules = []
        for name, key in self._named(
            group, "line-crossing-", ("enable", "class-id", "extended", "mode")
        ):
            values = _coordinates(group, key, count=8)
            points = [(values[i], values[i + 1]) for i in range(0, 8, 2)]
            rule = {"name": name, "direction": points[:2], "line": points[2:], **common}
            rules.append((rule, key))
        hint = "line-crossing-NAME=dx1;dy1;dx2;dy2;x1;y1;x2;y2 (direction, then the line)"
        return self._validated(group, rules, hint, _line)

    def _directions(self, group: Group) -> list[tuple[dict[str, Any], str]]:
        common = {"mode": self._mode(group, "balanced"), **self._classes(group)}
        rules = []
        for name, key in self._named(group, "direction-", ("enable", "class-id", "mode")):
            values = _coordinates(group, key, count=4)
            rule = {"name": name, "vector": [values[:2], values[2:]], **common}
            rules.append((rule, key))
        return self._validated(group, rules, "direction-NAME=x1;y1;x2;y2", _direction)

    # -- shared parts ---------------------------------------------------------------------------

    def _named(self, group: Group, prefix: str, known: tuple[str, ...]) -> list[tuple[str, str]]:
        """(name, key) of the group's ``prefix<name>`` keys; a note for any other key."""
        named = []
        for key in group:
            if key in known:
                continue
            if key.startswith(prefix):
                name = key[len(prefix) :]
                if not name:
                    raise group.error(key, f"needs a name after {prefix!r}, as in {prefix}Entry")
                named.append((name, key))
            else:
                self.note("unknown", group.place(key), "unknown key, not used")
        return named

    def _classes(self, group: Group) -> dict[str, Any]:
        class_ids = group.get_integer_list("class-id", [])
        return {"class_ids": None if not class_ids or -1 in class_ids else class_ids}

    def _mode(self, group: Group, default: str) -> str:
        mode = group.get_string("mode", default)
        if mode not in _MODES:
            self.note(
                "approximated",
                group.place("mode"),
                f"unknown mode {mode!r} (loose, balanced or strict): {default}, as DeepStream does",
            )
            return default
        return mode

    def _validated(
        self,
        group: Group,
        rules: list[tuple[dict[str, Any], str]],
        hint: str,
        model: Any,
    ) -> list[tuple[dict[str, Any], str]]:
        """The rules, each checked against its model (errors placed at its key)."""
        if not rules:
            raise group.error(None, f"has no rule; add one: {hint}")
        for rule, key in rules:
            try:
                model(rule)
            except ValidationError as error:
                raise group.error(key, _first_error(error)) from None
        return rules


def _roi(rule: dict[str, Any]) -> Any:
    from panoptes.analytics.rules import RoiRule

    return RoiRule.model_validate(rule)


def _overcrowding(rule: dict[str, Any]) -> Any:
    from panoptes.analytics.rules import OvercrowdingRule

    return OvercrowdingRule.model_validate(rule)


def _line(rule: dict[str, Any]) -> Any:
    from panoptes.analytics.rules import LineRule

    return LineRule.model_validate(rule)


def _direction(rule: dict[str, Any]) -> Any:
    from panoptes.analytics.rules import DirectionRule

    return DirectionRule.model_validate(rule)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    return message


def _positive(group: Group, key: str) -> int:
    value = group.get_integer(key)
    if value <= 0:
        raise group.error(key, f"expected a size in pixels, more than 0, got {value}")
    return value


def _coordinates(group: Group, key: str, *, count: int | None = None) -> list[int]:
    """Integer coordinates of ``key`` (``x1;y1;x2;y2...``), 0 or more, ``count`` of them."""
    values = group.get_integer_list(key)
    if count is not None and len(values) != count:
        raise group.error(key, f"expected {count} numbers separated by ';', got {len(values)}")
    negative = [value for value in values if value < 0]
    if negative:
        raise group.error(key, f"coordinates must be 0 or more, got {negative[0]}")
    return values


def _polygon(group: Group, key: str) -> list[tuple[int, int]]:
    values = _coordinates(group, key)
    if len(values) % 2 or len(values) < 6:
        raise group.error(
            key, f"expected x;y pairs of at least three corners, got {len(values)} numbers"
        )
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
