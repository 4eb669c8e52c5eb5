"""Config validation: every error names its place in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from panoptes import ConfigError
from panoptes.config import load_config, parse_config
from panoptes.config.loader import apply_overrides, format_place

GOOD = """
sources:
  - uri: clips/a.mp4
  - uri: clips/b.mp4
    name: shop
mux: {batch_size: 2, width: 1280, height: 720, batched_push_timeout_ms: 40}
infer:
  - name: detector
    model: yolox-nano
    threshold: 0.35
sinks:
  - type: jsonl
    path: out/meta.jsonl
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_issue_example_parses_with_defaults(tmp_path: Path) -> None:
    config, base_dir = load_config(write(tmp_path, GOOD))
    assert base_dir == tmp_path.resolve()
    assert config.sources[1].name == "shop" and config.sources[0].type == "uri-source"
    assert config.mux.width == 1280 and config.mux.keep_aspect
    assert config.infer[0].threshold == 0.35 and config.infer[0].nms_iou == 0.45
    assert config.sinks[0].type == "jsonl"


@pytest.mark.parametrize(
    ("change", "place", "words"),
    [
        ("sources:\n  - name: x\n", "sources[0].uri", "required key is missing"),
        ("sources:\n  - uri: a.mp4\n    lop: true\n", "sources[0].lop", "unknown key"),
        (
            "sources:\n  - uri: a.mp4\n  - uri: b.mp4\n    drop_frame_interval: 0\n",
            "sources[1].drop_frame_interval",
            "greater than or equal to 1",
        ),
        (
            "sources: [{uri: a.mp4}]\ninfer:\n  - threshold: 1.5\n",
            "infer[0].threshold",
            "less than or equal",
        ),
        (
            "sources: [{uri: a.mp4}]\nmux: {batch_size: -1}\n",
            "mux.batch_size",
            "greater than or equal",
        ),
        (
            "sources: [{uri: a.mp4}]\nsinks:\n  - path: x.jsonl\n",
            "sinks[0]",
            "unknown or missing sink type",
        ),
        (
            "sources: [{uri: a.mp4}]\nsinks:\n  - type: jsonl\n",
            "sinks[0].path",
            "required key is missing",
        ),
        ("sources: [{type: camera}]\n", "sources[0]", "unknown source type"),
        ("sources: []\n", "sources", "at least 1"),
        (
            "sources: [{uri: a.mp4}]\ninfer: [{class_thresholds: {0: 2}}]\n",
            "infer[0].class_thresholds",
            "not in [0, 1]",
        ),
        (
            "sources: [{uri: a.mp4}]\nsinks: [{type: file, path: a.mp4, crf: 99}]\n",
            "sinks[0].crf",
            "less than or equal to 51",
        ),
        (
            "sources: [{uri: a.mp4}]\nsinks: [{type: snapshot, format: gif}]\n",
            "sinks[0].format",
            "'jpg' or 'png'",
        ),
        ("sources: [{uri: a.mp4}]\ntracker: {type: deepsort}\n", "tracker.type", "bytetrack"),
        ("sources: [{uri: a.mp4}]\ntiler: {width: 4}\n", "tiler.width", "greater than"),
        (
            "sources: [{uri: a.mp4}]\nprobes: [{element: infer0}]\n",
            "probes[0].function",
            "required key is missing",
        ),
    ],
)
def test_errors_name_their_place(tmp_path: Path, change: str, place: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, change))
    message = str(caught.value)
    assert f"{place}: " in message and words in message, message
    assert place in caught.value.places


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipeline.yaml:\d+:\d+: not valid YAML"):
        load_config(write(tmp_path, "sources:\n  - uri: a.mp4\n   bad: [1\n  - uri: b\n"))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(write(tmp_path, ""))


def test_overrides_reach_nested_keys(tmp_path: Path) -> None:
    config, _ = load_config(
        write(tmp_path, GOOD),
        ["mux.batch_size=4", "infer[0].threshold=0.5", "sources.1.loop=true", "perf.interval_s=0"],
    )
    assert config.mux.batch_size == 4
    assert config.infer[0].threshold == 0.5
    assert config.sources[1].loop is True
    assert config.perf.interval_s == 0


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("mux.batch_size", "expected key.path=value"),
        ("sources[5].uri=x", "sources[5] does not exist"),
    ],
)
def test_bad_overrides(override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        apply_overrides({"sources": [{"uri": "a"}]}, [override])


def test_duplicate_element_names_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"infer\[1\].name: 'det' is already the name of infer\[0\]"
    ):
        parse_config({"sources": [{"uri": "a"}], "infer": [{"name": "det"}, {"name": "det"}]})


def test_format_place_drops_union_tags() -> None:
    assert format_place(("sources", 1, "uri-source", "uri")) == "sources[1].uri"
    assert format_place(("sinks", 0, "jsonl", "path")) == "sinks[0].path"
