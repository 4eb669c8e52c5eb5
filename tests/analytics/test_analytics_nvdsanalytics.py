"""DeepStream's config_nvdsanalytics.txt read into the analytics element's properties."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from panoptes.config.deepstream.nvdsanalytics import read_nvdsanalytics_config
from panoptes.config.deepstream.translate import Note
from panoptes.config.loader import parse_config
from panoptes.core.errors import ConfigError
from panoptes.elements.analytics import AnalyticsProperties

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "deepstream" / "config_nvdsanalytics.txt"
RF = [[295, 643], [579, 634], [642, 913], [56, 828]]
EXIT = {
    "name": "Exit",
    "direction": [[789, 672], [1084, 900]],
    "line": [[851, 773], [1203, 732]],
    "class_ids": [0],
    "extended": False,
    "mode": "loose",
    "count": ["in"],
}
DIRECTIONS = [
    {"name": "South", "vector": [[284, 840], [360, 662]], "class_ids": [0]},
    {"name": "North", "vector": [[1106, 622], [1312, 701]], "class_ids": [0]},
]

# The same rules, written in the native YAML.
NATIVE = f"""
config_width: 1920
config_height: 1080
font_scale: 0.4
streams:
  - source: 0
    rois: [{{name: RF, polygon: {RF}}}]
    lines: [{EXIT}]
    directions: {DIRECTIONS}
  - source: 1
    lines: [{EXIT}]
    overcrowding: [{{name: OC, polygon: {RF}, threshold: 2}}]
    directions: {DIRECTIONS}
  - source: 2
    rois: [{{name: RF, polygon: {RF}, inverse: true, class_ids: [0]}}]
"""


def write(tmp_path: Path, text: str, name: str = "config_nvdsanalytics.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_sample_reads_as_the_same_rules_written_natively() -> None:
    notes: list[Note] = []
    read = read_nvdsanalytics_config(SAMPLE, notes=notes)
    native = AnalyticsProperties.model_validate(yaml.safe_load(NATIVE))
    assert read == native
    assert notes == []
    assert read.draw and read.draw_counts


def test_what_is_read_goes_into_a_native_config_unchanged() -> None:
    """A translated deepstream-app config carries the rules as a plain ``analytics`` dict."""
    read = read_nvdsanalytics_config(SAMPLE)
    section = read.model_dump(mode="json", exclude_defaults=True)
    config = parse_config({"sources": [{"uri": "x.mp4"}], "analytics": section})
    assert config.analytics == read


def test_the_yaml_form_reads_as_the_ini_form(tmp_path: Path) -> None:
    text = """
property:
  enable: 1
  config-width: 1920
  config-height: 1080
  osd-mode: 1
line-crossing-stream-0:
  enable: 1
  line-crossing-Exit: 789;672;1084;900;851;773;1203;732
  class-id: 0
  extended: 0
  mode: loose
"""
    read = read_nvdsanalytics_config(write(tmp_path, text, "analytics.yml"))
    assert read.draw and not read.draw_counts
    assert read.streams[0].lines[0].model_dump(mode="json") == {
        **EXIT,
        "direction": [[789.0, 672.0], [1084.0, 900.0]],
        "line": [[851.0, 773.0], [1203.0, 732.0]],
        "min_size_wh": None,
        "max_size_wh": None,
    }


HEAD = "[property]\nenable=1\nconfig-width=1920\nconfig-height=1080\n"


def test_deepstream_defaults(tmp_path: Path) -> None:
    text = HEAD + (
        "[line-crossing-stream-3]\nenable=1\nline-crossing-L=0;0;0;10;0;5;10;5\n"
        "[overcrowding-stream-3]\nenable=1\nroi-Q=0;0;10;0;10;10\n"
        "[direction-detection-stream-3]\nenable=1\ndirection-D=0;0;10;0\n"
        # Groups are off unless enable=1.
        "[roi-filtering-stream-3]\nroi-Off=0;0;10;0;10;10\n"
    )
    read = read_nvdsanalytics_config(write(tmp_path, text))
    (stream,) = read.streams
    assert stream.source == 3 and stream.rois == []
    line = stream.lines[0]
    assert (line.extended, line.mode, line.count, line.class_ids) == (True, "loose", ["in"], None)
    assert (stream.overcrowding[0].threshold, stream.overcrowding[0].time_threshold_ms) == (1, 0)
    assert stream.directions[0].mode == "balanced"
    assert (read.draw, read.draw_counts, read.font_scale) == (True, True, None)


def test_analytics_switched_off(tmp_path: Path) -> None:
    text = HEAD.replace("enable=1", "enable=0") + "[roi-filtering-stream-0]\nenable=1\n"
    text += "roi-A=0;0;10;0;10;10\n"
    assert read_nvdsanalytics_config(write(tmp_path, text)).streams == []


def test_what_is_not_honoured_is_noted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = HEAD + (
        "obj-cnt-win-in-ms=1000\nfont=Serif\n"
        "[roi-filtering-stream-0]\nenable=1\nroi-A=0;0;10;0;10;10\nfilter=1\n"
        "[overcrowding-stream-0]\nenable=1\nroi-A=0;0;10;0;10;10\n"
        "[line-crossing-stream-0]\nenable=1\nline-crossing-B=0;0;0;10;0;5;10;5\nmode=tight\n"
        "[tracker]\nenable=1\n"
    )
    notes: list[Note] = []
    read = read_nvdsanalytics_config(write(tmp_path, text), notes=notes)
    assert [str(note) for note in notes] == [
        "config_nvdsanalytics.txt:5 [property] obj-cnt-win-in-ms: unsupported: the per-class "
        "object counts of the frame are not smoothed over time",
        "config_nvdsanalytics.txt:6 [property] font: unknown: unknown key, not used",
        "config_nvdsanalytics.txt:10 [roi-filtering-stream-0] filter: unknown: unknown key, "
        "not used",
        "config_nvdsanalytics.txt:17 [line-crossing-stream-0] mode: approximated: unknown mode "
        "'tight' (loose, balanced or strict): loose, as DeepStream does",
        "config_nvdsanalytics.txt:18 [tracker]: unknown: unknown group, not used",
        "config_nvdsanalytics.txt:13 [overcrowding-stream-0] roi-A: approximated: another rule "
        "of stream 0 is named 'A'; this one is named 'A (overcrowding)'",
    ]
    assert [rule.name for rule in read.streams[0].overcrowding] == ["A (overcrowding)"]
    # Without a list, the notes are logged.
    with caplog.at_level(logging.WARNING, logger="panoptes.config.deepstream"):
        read_nvdsanalytics_config(write(tmp_path, text))
    assert len(caplog.records) == 6


@pytest.mark.parametrize(
    ("text", "place", "words"),
    [
        ("[property]\nenable=1\nconfig-width=1920\n", ":1 [property] config-height", "missing"),
        (HEAD.replace("width=1920", "width=wide"), ":3 [property] config-width", "integer"),
        (HEAD.replace("width=1920", "width=0"), ":3 [property] config-width", "more than 0"),
        (HEAD + "osd-mode=3\n", ":5 [property] osd-mode", "expected 0"),
        ("[roi-filtering-stream-0]\nenable=1\n", "config_nvdsanalytics.txt", "[property]"),
        (
            HEAD + "[roi-filtering-stream-0]\nenable=1\nroi-A=0;0;10;0;10\n",
            ":7 [roi-filtering-stream-0] roi-A",
            "x;y pairs",
        ),
        (
            HEAD + "[roi-filtering-stream-0]\nenable=1\nroi-A=0;0;10;0;10;-10\n",
            ":7 [roi-filtering-stream-0] roi-A",
            "0 or more",
        ),
        (
            HEAD + "[roi-filtering-stream-0]\nenable=1\nroi-A=0;0;10;10;20;20\n",
            ":7 [roi-filtering-stream-0] roi-A",
            "enclose no area",
        ),
        (
            HEAD + "[roi-filtering-stream-0]\nenable=1\nroi-A=0;0;10;0;ten;10\n",
            ":7 [roi-filtering-stream-0] roi-A",
            "integer",
        ),
        (
            HEAD + "[roi-filtering-stream-0]\nenable=yes\nroi-A=0;0;10;0;10;10\n",
            ":6 [roi-filtering-stream-0] enable",
            "boolean",
        ),
        (HEAD + "[roi-filtering-stream-0]\nenable=1\n", ":5 [roi-filtering-stream-0]", "no rule"),
        (
            HEAD + "[roi-filtering-stream-x]\nenable=1\nroi-A=0;0;10;0;10;10\n",
            ":5 [roi-filtering-stream-x]",
            "stream number",
        ),
        (
            HEAD + "[line-crossing-stream-0]\nenable=1\nline-crossing-L=0;0;0;10;0;5;10\n",
            ":7 [line-crossing-stream-0] line-crossing-L",
            "expected 8 numbers",
        ),
        (
            HEAD + "[line-crossing-stream-0]\nenable=1\nline-crossing-L=0;0;10;0;0;5;10;5\n",
            ":7 [line-crossing-stream-0] line-crossing-L",
            "runs along the direction",
        ),
        (
            HEAD + "[line-crossing-stream-0]\nenable=1\nline-crossing-=0;0;0;10;0;5;10;5\n",
            ":7 [line-crossing-stream-0] line-crossing-",
            "needs a name",
        ),
        (
            HEAD + "[overcrowding-stream-0]\nenable=1\nroi-Q=0;0;10;0;10;10\nobject-threshold=-2\n",
            ":8 [overcrowding-stream-0] object-threshold",
            "0 or more",
        ),
        (
            HEAD + "[direction-detection-stream-0]\nenable=1\ndirection-D=0;0;10\n",
            ":7 [direction-detection-stream-0] direction-D",
            "expected 4 numbers",
        ),
        (
            HEAD + "[direction-detection-stream-0]\nenable=1\ndirection-D=5;5;5;5\n",
            ":7 [direction-detection-stream-0] direction-D",
            "the same",
        ),
        (
            HEAD + "[direction-detection-stream-0]\nenable=1\ndirection-D=0;0;1;1\nclass-id=a\n",
            ":8 [direction-detection-stream-0] class-id",
            "integer",
        ),
    ],
)
def test_malformed_files_give_errors_at_their_line(
    tmp_path: Path, text: str, place: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read_nvdsanalytics_config(write(tmp_path, text))
    assert caught.value.place is not None and caught.value.place.endswith(place)
    assert words in caught.value.reason


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_nvdsanalytics_config(tmp_path / "nothing.txt")
