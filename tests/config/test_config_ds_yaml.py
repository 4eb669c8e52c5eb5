"""DeepStream's YAML forms: app and nvinfer configs as key files, tracker files as documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from panoptes.config.deepstream import (
    parse_yaml_document,
    parse_yaml_keyfile,
    read_config_file,
    read_yaml_document,
    read_yaml_keyfile,
)
from panoptes.core.errors import ConfigError

TRACKER = """\
%YAML:1.0
################################################################################
# NvDCF-like low-level tracker configuration
################################################################################

BaseConfig:
  minDetectorConfidence: 0   # detections below this are not tracked

TargetManagement:
  enableBboxUnClipping: 1
  maxTargetsPerStream: 150
  minIouDiff4NewTarget: 0.5
  probationAge: 3 # frames

DataAssociator:
  associationMatcherType: 0 # GREEDY=0, GLOBAL=1
  minMatchingScore4Iou: 0.3

StateEstimator:
  stateEstimatorType: 1
  processNoiseVar4Loc: 2.0
  measurementNoiseVar4Tracker: 1e-3

VisualTracker:
  visualTrackerType: 1
  featureFocusOffsetFactor_y: -0.2
  filterLr: 0.075

ReID:
  inferDims: [3, 256, 128]
  offsets: [123.675, 116.28, 103.53]
"""

APP_YAML = """\
################################################################################
# deepstream-app configuration in its YAML form
################################################################################

application:
  enable-perf-measurement: 1
  perf-measurement-interval-sec: 5

tiled-display:
  enable: 1
  rows: 2
  columns: 2
  width: 1280
  height: 720

source:
  csv-file-path: lists/sources.csv

sink0:
  enable: 1
  #Type - 1=FakeSink 2=EglSink 3=File
  type: 3
  codec: 1
  output-file: out.mp4

osd:
  enable: 1
  text-color: 1;1;1;1
  text-bg-color: 0.3;0.3;0.3;1
  font: Serif

streammux:
  batch-size: 4
  batched-push-timeout: 40000
  width: 1920
  height: 1080

primary-gie:
  enable: 1
  bbox-border-color0: 1;0;0;1
  bbox-border-color3: 0;1;0;1
  config-file: config_infer_primary.yml

tracker:
  enable: 1
  ll-config-file: config_tracker_NvDCF_perf.yml

secondary-gie0:
  enable: 1
  operate-on-gie-id: 1
  operate-on-class-ids: 0
  config-file: config_infer_secondary_vehicletypes.txt

tests:
  file-loop: 0
"""

# The columns of NVIDIA's sources_4.csv; no final newline, as in the sample.
SOURCES_CSV = (
    "enable,type,uri,num-sources,gpu-id,cudadec-memtype\n"
    "1,3,file://../../streams/sample_1080p_h264.mp4,2,0,0\n"
    "0,4,rtsp://cam.local:554/live,1,0,0\n"
    "1,2,file:///videos/hall.mp4,1,0,0"
)

INFER_YAML = """\
property:
  gpu-id: 0
  net-scale-factor: 0.0039215697906911373
  onnx-file: ../../models/Primary_Detector/resnet18.onnx
  labelfile-path: ../../models/Primary_Detector/labels.txt
  batch-size: 30
  network-mode: 1
  num-detected-classes: 4
  output-blob-names: conv2d_bbox;conv2d_cov/Sigmoid
  cluster-mode: 2
  maintain-aspect-ratio: true
  custom-lib-path: C:\\not\\escaped.so

class-attrs-all:
  topk: 20
  nms-iou-threshold: 0.5
  pre-cluster-threshold: 0.2

## Per class configurations
class-attrs-0:
  pre-cluster-threshold: 0.4
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# The tracker's ll-config-file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "shift"),
    [
        pytest.param(TRACKER, 0, id="opencv-directive"),
        pytest.param(TRACKER.replace("%YAML:1.0\n", "%YAML:1.0\n---\n", 1), 1, id="and-dashes"),
        pytest.param(TRACKER.replace("\n", "\r\n"), 0, id="crlf"),
        pytest.param("\ufeff" + TRACKER, 0, id="utf8-bom"),
    ],
)
def test_tracker_config(tmp_path: Path, variant: str, shift: int) -> None:
    path = tmp_path / "config_tracker_NvDCF_perf.yml"
    path.write_bytes(variant.encode())
    document = read_yaml_document(path)
    assert list(document.data) == [
        "BaseConfig",
        "TargetManagement",
        "DataAssociator",
        "StateEstimator",
        "VisualTracker",
        "ReID",
    ]
    assert document.data["TargetManagement"]["maxTargetsPerStream"] == 150
    assert document.data["VisualTracker"]["filterLr"] == 0.075
    assert document.data["VisualTracker"]["featureFocusOffsetFactor_y"] == -0.2
    assert document.data["StateEstimator"]["measurementNoiseVar4Tracker"] == 0.001
    assert document.data["ReID"]["inferDims"] == [3, 256, 128]
    assert document.path == path
    assert (
        document.place("VisualTracker", "filterLr")
        == f"config_tracker_NvDCF_perf.yml:{27 + shift} VisualTracker.filterLr"
    )
    assert (
        document.place("ReID", "offsets", 1)
        == f"config_tracker_NvDCF_perf.yml:{31 + shift} ReID.offsets[1]"
    )
    assert document.line("TargetManagement") == 9 + shift
    assert document.line("Missing", "key") is None
    assert document.place("Missing") == "config_tracker_NvDCF_perf.yml Missing"
    error = document.error(("DataAssociator", "associationMatcherType"), "GLOBAL is not supported")
    assert str(error) == (
        f"config_tracker_NvDCF_perf.yml:{16 + shift} DataAssociator.associationMatcherType: "
        "GLOBAL is not supported"
    )


def test_opencv_matrix() -> None:
    document = parse_yaml_document(
        "%YAML:1.0\n---\nK: !!opencv-matrix\n  rows: 2\n  cols: 3\n  dt: d\n"
        "  data: [1., 0., 320., 0., 1., 240.]\n"
    )
    assert document.data["K"] == [[1.0, 0.0, 320.0], [0.0, 1.0, 240.0]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "%YAML:1.0\nBaseConfig:\n  minDetectorConfidence: 0\n bad: [\n",
            r"^t\.yml:4: invalid YAML: ",
        ),
        (
            "%YAML:1.0\nBaseConfig:\n\tfilterLr: 0.1\n",
            r"^t\.yml:3: invalid YAML: found character '\\t'",
        ),
        ("- 1\n- 2\n", r"^t\.yml:1: expected sections such as `BaseConfig:`, got a list$"),
        (
            "K: !!opencv-matrix\n  rows: 2\n  cols: 2\n  dt: f\n  data: [1, 2, 3]\n",
            r"^t\.yml:1: invalid YAML: an !!opencv-matrix needs integer rows and cols",
        ),
        ("K: !!opencv-nd-matrix\n  sizes: [1]\n", r"^t\.yml:1: invalid YAML: could not determine"),
    ],
)
def test_bad_tracker_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_yaml_document(text, "t.yml")


def test_empty_tracker_file() -> None:
    assert parse_yaml_document("%YAML:1.0\n# nothing else\n").data == {}


# The YAML form of an application config, with its sources CSV -------------------------------------


@pytest.fixture
def app_yaml(tmp_path: Path) -> Path:
    write(tmp_path / "samples" / "configs" / "lists" / "sources.csv", SOURCES_CSV)
    return write(tmp_path / "samples" / "configs" / "app.yml", APP_YAML)


def test_yaml_app_config_presents_groups_like_ini(tmp_path: Path, app_yaml: Path) -> None:
    config = read_config_file(app_yaml)
    assert config.dialect == "yaml"
    assert list(config) == [
        "application",
        "tiled-display",
        "source",
        "source0",
        "source1",
        "source2",
        "sink0",
        "osd",
        "streammux",
        "primary-gie",
        "tracker",
        "secondary-gie0",
        "tests",
    ]
    assert config["sink0"].get_integer("type") == 3 and config["sink0"].enabled
    assert config["sink0"].place("codec") == "app.yml:23 [sink0] codec"
    assert config["osd"].get_double_list("text-color") == [1.0, 1.0, 1.0, 1.0]
    gie = config["primary-gie"]
    assert [n for n, _ in gie.numbered_keys("bbox-border-color")] == [0, 3]
    assert gie.get_path("config-file") == str(
        app_yaml.parent.resolve() / "config_infer_primary.yml"
    )
    assert config["secondary-gie0"].get_integer_list("operate-on-class-ids") == [0]
    assert [n for n, _ in config.groups_matching("secondary-gie")] == [0]
    assert config["tests"].enabled and config["streammux"].get_integer("batch-size") == 4


def test_sources_come_from_the_csv_rows(tmp_path: Path, app_yaml: Path) -> None:
    config = read_config_file(app_yaml)
    sources = config.groups_matching("source")
    assert [(n, g.enabled) for n, g in sources] == [(0, True), (1, False), (2, True)]
    first = config["source0"]
    assert list(first) == ["enable", "type", "uri", "num-sources", "gpu-id", "cudadec-memtype"]
    assert first.get_integer("num-sources") == 2
    # Paths in the CSV resolve against the YAML file, as deepstream-app resolves them.
    streams = tmp_path.resolve() / "streams" / "sample_1080p_h264.mp4"
    assert first.get_path("uri") == f"file://{streams}"
    assert config["source1"].get_path("uri") == "rtsp://cam.local:554/live"
    assert config["source2"].place("uri") == "sources.csv:4 [source2] uri"
    assert first.place() == "sources.csv:2 [source0]"


def test_sources_csv_with_crlf_and_blank_lines(tmp_path: Path) -> None:
    write(
        tmp_path / "s.csv",
        "enable,type,uri\r\n\r\n1,3,file:///a.mp4\r\n 1 , 2 , file:///b.mp4 \r\n\r\n",
    )
    path = write(tmp_path / "app.yml", "source:\n  csv-file-path: s.csv\n")
    config = read_yaml_keyfile(path)
    assert [config[f"source{n}"].get_string("uri") for n in (0, 1)] == [
        "file:///a.mp4",
        "file:///b.mp4",
    ]
    assert config["source1"].place("type") == "s.csv:4 [source1] type"


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        (
            "enable,type,uri\n1,3\n",
            "s.csv:2: expected 3 values (enable,type,uri), got 2",
        ),
        ("", "s.csv: no header row (such as `enable,type,uri,num-sources`)"),
        ("enable,,uri\n", "s.csv:1: the header row has an empty column name: 'enable,,uri'"),
    ],
)
def test_bad_sources_csv(tmp_path: Path, csv_text: str, message: str) -> None:
    write(tmp_path / "s.csv", csv_text)
    path = write(tmp_path / "app.yml", "source:\n  csv-file-path: s.csv\n")
    with pytest.raises(ConfigError) as raised:
        read_config_file(path)
    assert str(raised.value) == message


def test_missing_sources_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "app.yml", "application:\n  x: 1\nsource:\n  csv-file-path: none.csv\n")
    with pytest.raises(ConfigError) as raised:
        read_config_file(path)
    assert str(raised.value).startswith(
        "app.yml:4 [source] csv-file-path: cannot read the sources CSV "
        f"{tmp_path.resolve()}/none.csv: cannot read the file: No such file"
    )


def test_csv_row_clashing_with_a_group(tmp_path: Path) -> None:
    write(tmp_path / "s.csv", "enable,uri\n1,a.mp4\n")
    path = write(tmp_path / "app.yml", "source0:\n  enable: 1\nsource:\n  csv-file-path: s.csv\n")
    with pytest.raises(ConfigError, match=r"^s\.csv:2 \[source0\]: is also a group of app\.yml"):
        read_config_file(path)


# The YAML form of an nvinfer config ---------------------------------------------------------------


def test_yaml_infer_config(tmp_path: Path) -> None:
    path = write(tmp_path / "samples" / "configs" / "config_infer_primary.yml", INFER_YAML)
    config = read_config_file(path)
    assert list(config) == ["property", "class-attrs-all", "class-attrs-0"]
    infer = config["property"]
    assert infer.get_double("net-scale-factor") == 0.0039215697906911373
    assert infer.get_string_list("output-blob-names") == ["conv2d_bbox", "conv2d_cov/Sigmoid"]
    assert infer.get_boolean("maintain-aspect-ratio") is True
    # YAML values are taken verbatim: no GLib escapes.
    assert infer.get_string("custom-lib-path") == "C:\\not\\escaped.so"
    assert infer.get_path("labelfile-path") == str(
        tmp_path.resolve() / "models/Primary_Detector/labels.txt"
    )
    assert config["class-attrs-0"].get_double("pre-cluster-threshold") == 0.4
    assert (
        config["class-attrs-all"].place("topk")
        == "config_infer_primary.yml:15 [class-attrs-all] topk"
    )
    assert infer.enabled


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("True", True), ("yes", True), ("off", False), ("0", False)],
)
def test_yaml_booleans(raw: str, expected: bool) -> None:
    group = parse_yaml_keyfile(f"property:\n  k: {raw}\n")["property"]
    assert group.get_boolean("k") is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "osd:\n  text-color: [1, 1, 1, 1]\n",
            "t.yml:2 [osd] text-color: expected one value, got a list; DeepStream's YAML readers "
            "take a list as one string such as `1;0;0;1`",
        ),
        ("osd: 1\n", "t.yml:1 [osd]: expected `key: value` lines under `osd:`, got the value '1'"),
        ("- osd\n", "t.yml:1: expected groups such as `application:` or `property:`, got a list"),
        (
            "osd:\n  enable: 1\n  x: [\n",
            "t.yml:4: invalid YAML: expected the node content, but found '<stream end>'",
        ),
        ("sink0:\n  bitrate: fast\n", None),
    ],
)
def test_yaml_keyfile_errors(text: str, message: str | None) -> None:
    if message is None:
        with pytest.raises(ConfigError) as raised:
            parse_yaml_keyfile(text, "t.yml")["sink0"].get_integer("bitrate")
        assert str(raised.value) == "t.yml:2 [sink0] bitrate: expected an integer, got 'fast'"
        return
    with pytest.raises(ConfigError) as raised:
        parse_yaml_keyfile(text, "t.yml")
    assert str(raised.value) == message


def test_yaml_null_values_and_empty_groups() -> None:
    config = parse_yaml_keyfile("tests:\nosd:\n  font:\n  enable: 1\n")
    assert len(config["tests"]) == 0 and config["osd"].get_string("font") == ""


# Picking INI or YAML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "dialect"),
    [
        ("app.txt", "[application]\nenable-perf-measurement=1\n", "ini"),
        ("app.yml", "application:\n  enable-perf-measurement: 1\n", "yaml"),
        ("app.YAML", "application:\n  enable-perf-measurement: 1\n", "yaml"),
        ("app.txt", "# a comment\n\napplication:\n  enable-perf-measurement: 1\n", "yaml"),
        ("infer", "property:\n  gpu-id: 0\n", "yaml"),
        ("infer.txt", "# property: commented out\n[property]\ngpu-id=0\n", "ini"),
        ("tracker.txt", "%YAML:1.0\nBaseConfig:\n  minDetectorConfidence: 0\n", "yaml"),
    ],
)
def test_read_config_file_picks_the_form(
    tmp_path: Path, name: str, text: str, dialect: str
) -> None:
    config = read_config_file(write(tmp_path / name, text))
    assert config.dialect == dialect and len(config) == 1


def test_ini_file_with_a_bad_line_stays_ini(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^app\.txt:2 \[application\]: expected `key=value`"):
        read_config_file(write(tmp_path / "app.txt", "[application]\nuri: file:///x.mp4\n"))
