"""DeepStream INI files read as GLib's GKeyFile reads them (each case checked against GLib 2.74)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import panoptes.config.deepstream as deepstream
from panoptes.config.deepstream import (
    ENABLE_DEFAULTS,
    Group,
    KeyFile,
    parse_keyfile,
    read_keyfile,
    resolve_path,
)
from panoptes.core.errors import ConfigError

APP_CONFIG = """\
# deepstream-app configuration, as the samples write it
[application]
enable-perf-measurement=1
perf-measurement-interval-sec=5

[tiled-display]
enable=1
rows=1
columns=2
width=1280
height=720

[source0]
enable=1
#Type - 1=CameraV4L2 2=URI 3=MultiURI
type=3
uri=file://../../streams/sample.mp4
num-sources=2
gpu-id=0

[sink0]
enable=1
type=3 # file
codec=1 #h264
bitrate=2000000
output-file=out.mp4

[osd]
enable=1
border-width=1
text-size=15
text-color=1;1;1;1;
text-bg-color=0.3;0.3;0.3;1
font=Serif

[primary-gie]
enable=1
bbox-border-color0=1;0;0;1
bbox-border-color17=0;0;1;1
bbox-border-color2=0;1;0;1
operate-on-class-ids=0;
config-file=config_infer_primary.txt

[tracker]
enable=1
tracker-width=640
ll-config-file=config_tracker_NvDCF_perf.yml

[tests]
file-loop=0
"""


def keyfile(text: str, name: str = "t.txt") -> KeyFile:
    return parse_keyfile(text, name)


def value_group(value: str) -> Group:
    return keyfile(f"[a]\nk={value}\n")["a"]


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        keyfile(text)
    return str(raised.value)


def test_public_api_is_curated() -> None:
    for name in deepstream.__all__:
        assert getattr(deepstream, name) is not None
    assert "read_config_file" in deepstream.__all__ and "KeyFile" in deepstream.__all__


# A whole application configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda text: text, id="lf"),
        pytest.param(lambda text: text.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda text: text.rstrip("\n"), id="no-final-newline"),
        pytest.param(lambda text: text.replace("\n", "\r\n").rstrip("\r\n"), id="crlf-no-final"),
        pytest.param(lambda text: "\ufeff" + text, id="utf8-bom"),
    ],
)
def test_app_config_reads_alike_in_every_variant(
    tmp_path: Path, variant: Callable[[str], str]
) -> None:
    path = tmp_path / "samples" / "configs" / "app.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(variant(APP_CONFIG).encode())
    config = read_keyfile(path)

    assert list(config) == [
        "application",
        "tiled-display",
        "source0",
        "sink0",
        "osd",
        "primary-gie",
        "tracker",
        "tests",
    ]
    source = config["source0"]
    assert source.get_integer("type") == 3 and source.get_integer("num-sources") == 2
    assert source.get_path("uri") == f"file://{tmp_path.resolve()}/streams/sample.mp4"
    sink = config["sink0"]
    assert sink.get_integer("type") == 3 and sink.get_integer("codec") == 1
    assert sink.get_value("type") == "3 # file"
    assert config["osd"].get_double_list("text-color") == [1.0, 1.0, 1.0, 1.0]
    assert config["osd"].get_string("font") == "Serif"
    gie = config["primary-gie"]
    assert gie.get_integer_list("operate-on-class-ids") == [0]
    assert [(n, gie.get_double_list(e.key)) for n, e in gie.numbered_keys("bbox-border-color")] == [
        (0, [1.0, 0.0, 0.0, 1.0]),
        (2, [0.0, 1.0, 0.0, 1.0]),
        (17, [0.0, 0.0, 1.0, 1.0]),
    ]
    assert gie.get_path("config-file") == str(path.parent.resolve() / "config_infer_primary.txt")
    assert config["tests"].get_integer("file-loop") == 0
    assert config["sink0"]["codec"].line == 24
    assert config["sink0"].place("bitrate") == "app.txt:25 [sink0] bitrate"
    assert all(config[name].enabled for name in config)


def test_error_names_file_line_group_and_key() -> None:
    config = keyfile(APP_CONFIG.replace("bitrate=2000000", "bitrate=fast"), "app.txt")
    with pytest.raises(ConfigError) as raised:
        config["sink0"].get_integer("bitrate")
    assert str(raised.value) == "app.txt:25 [sink0] bitrate: expected an integer, got 'fast'"
    assert raised.value.places == ["app.txt:25 [sink0] bitrate"]
    assert isinstance(raised.value, ValueError)


def test_missing_key_without_default_is_an_error_at_the_group() -> None:
    group = keyfile(APP_CONFIG, "app.txt")["tracker"]
    assert group.get_integer("tracker-height", 384) == 384
    assert group.get_string("ll-lib-file", None) is None
    with pytest.raises(ConfigError, match=r"^app\.txt:44 \[tracker\] tracker-height: required key"):
        group.get_integer("tracker-height")


def test_missing_group() -> None:
    with pytest.raises(ConfigError, match=r"^app\.txt: missing group \[streammux\]$"):
        keyfile(APP_CONFIG, "app.txt").require("streammux")


# Lines: comments, groups, keys --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("# c\n\n[a]\nk=1\n", {"a": {"k": "1"}}),
        ("   # indented comment\n\t\n[a]\n", {"a": {}}),
        ("[a]   \t\nk=1\n", {"a": {"k": "1"}}),
        ("  [a]  \nk=1\n", {"a": {"k": "1"}}),
        ("[ a ]\nk=1\n", {" a ": {"k": "1"}}),
        ("[A]\nK=1\n[a]\nk=2\n", {"A": {"K": "1"}, "a": {"k": "2"}}),
        ("[a]\n  k  =  v  \n", {"a": {"k": "v  "}}),
        ("[a]\n\tk\t=\tv\n", {"a": {"k": "v"}}),
        ("[a]\nk with  inner = v\n", {"a": {"k with  inner": "v"}}),
        ("[a]\nk==1\n", {"a": {"k": "=1"}}),
        ("[a]\nk = v = w\n", {"a": {"k": "v = w"}}),
        ("[a]\nk=\n", {"a": {"k": ""}}),
        ("[a]\nk=1\nk=2\n", {"a": {"k": "2"}}),
        ("[a]\nx=1\n[b]\nz=1\n[a]\ny=3\nx=4\n", {"a": {"x": "4", "y": "3"}, "b": {"z": "1"}}),
        ("[a]\n; c = y\n", {"a": {"; c": "y"}}),
        ("[a]\nName[de]=Hallo\nName=Hello\n", {"a": {"Name": "Hello"}}),
        ("[a]\nk=1\r\r\n", {"a": {"k": "1\r"}}),
        ("", {}),
        ("# only a comment", {}),
    ],
)
def test_lines_as_glib_reads_them(text: str, groups: dict[str, dict[str, str]]) -> None:
    config = keyfile(text)
    assert {name: {key: config[name][key].raw for key in config[name]} for name in config} == groups


def test_repeated_key_keeps_the_line_of_the_last() -> None:
    group = keyfile("[a]\nk=1\nj=0\nk=2\n")["a"]
    assert group["k"].line == 4 and list(group) == ["k", "j"]


def test_repeated_group_is_merged_and_keeps_its_first_line() -> None:
    config = keyfile("[a]\nx=1\n[b]\n[a]\ny=2\n")
    assert config["a"].line == 1 and list(config["a"]) == ["x", "y"] and list(config) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[a]\nk=1\n; a comment\n",
            "t.txt:3 [a]: expected `key=value`, `[group]` or a `#` comment, got '; a comment'; "
            "GLib comments start with `#`, not `;`",
        ),
        ("k=1\n[a]\n", "t.txt:1: key 'k' comes before any [group]; put it under one"),
        (
            "[osd] # display\n",
            "t.txt:1: expected `key=value`, `[group]` or a `#` comment, got '[osd] # display'",
        ),
        ("[a\n", "t.txt:1: expected `key=value`, `[group]` or a `#` comment, got '[a'"),
        ("[a]\n=1\n", "t.txt:2 [a]: expected `key=value`, `[group]` or a `#` comment, got '=1'"),
        (
            "[a]\nenable\n",
            "t.txt:2 [a]: expected `key=value`, `[group]` or a `#` comment, got 'enable'",
        ),
        ("[a]\n[]\n", "t.txt:2: invalid group name []"),
        ("[a]\n[a[b]\n", "t.txt:2: invalid group name [a[b]"),
        ("[a]\nk]=1\n", "t.txt:2 [a]: invalid key name 'k]'"),
    ],
)
def test_malformed_lines(text: str, message: str) -> None:
    assert error_of(text) == message


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.txt: cannot read the file: No such file"):
        read_keyfile(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"[a]\nk=1\nfont=S\xe9rif\n")
    with pytest.raises(ConfigError, match=r"^latin\.txt:3: not UTF-8 text$"):
        read_keyfile(latin)


# Values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3", 3),
        ("3 # file", 3),
        ("1 #h264", 1),
        ("3\t# c", 3),
        ("-7", -7),
        ("+5", 5),
        ("007", 7),
        ("1\r", 1),
        ("2147483647", 2147483647),
        ("-2147483648", -2147483648),
    ],
)
def test_integers(raw: str, expected: int) -> None:
    assert value_group(raw).get_integer("k") == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("fast", "expected an integer, got 'fast'"),
        ("3abc", "expected an integer, got '3abc'"),
        ("", "expected an integer, got ''"),
        ("0x10", "expected an integer, got '0x10'"),
        ("1_000", "expected an integer, got '1_000'"),
        ("1.5", "expected an integer, got '1.5'"),
        ("2147483648", "integer out of range (32 bits), got '2147483648'"),
    ],
)
def test_integer_errors(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        value_group(raw).get_integer("k")
    assert str(raised.value) == f"t.txt:2 [a] k: {message}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("5", 5), ("18446744073709551615", 2**64 - 1), ("+7", 7)],
)
def test_uint64(raw: str, expected: int) -> None:
    assert value_group(raw).get_uint64("k") == expected


@pytest.mark.parametrize("raw", ["5 ", "5 # c", "-1", "18446744073709551616", "abc"])
def test_uint64_errors(raw: str) -> None:
    with pytest.raises(ConfigError):
        value_group(raw).get_uint64("k")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("true ", True), ("0", False), ("false\t", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert value_group(raw).get_boolean("k") is expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("TRUE", "expected a boolean (1, 0, true or false), got 'TRUE'"),
        ("yes", "expected a boolean (1, 0, true or false), got 'yes'"),
        ("2", "expected a boolean (1, 0, true or false), got '2'"),
        (
            "1 # on",
            "expected a boolean (1, 0, true or false), got '1 # on' "
            "(put a comment on a line of its own: GLib reads `#` after a value as part of it)",
        ),
    ],
)
def test_boolean_errors(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        value_group(raw).get_boolean("k")
    assert str(raised.value) == f"t.txt:2 [a] k: {message}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.0039215697906911373", 0.0039215697906911373),
        ("3", 3.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e-3", 0.001),
        ("-.5e+2", -50.0),
        ("0x10", 16.0),
        ("0x1p3", 8.0),
        ("inf", math.inf),
        ("-Infinity", -math.inf),
    ],
)
def test_doubles(raw: str, expected: float) -> None:
    assert value_group(raw).get_double("k") == expected


def test_double_nan() -> None:
    assert math.isnan(value_group("NaN").get_double("k"))


@pytest.mark.parametrize("raw", ["0.5 ", "0.5 # c", "1,5", "1_0", "1e", "-", "", "fast"])
def test_double_errors(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^t\.txt:2 \[a\] k: expected a number, got"):
        value_group(raw).get_double("k")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Serif", "Serif"),
        ("a\\sb\\tc\\nd\\\\e\\rf", "a b\tc\nd\\e\rf"),
        ("\\s\\sx", "  x"),
        ("trail  ", "trail  "),
        ("rtsp://user:pw@cam/stream?x=1;y=2", "rtsp://user:pw@cam/stream?x=1;y=2"),
    ],
)
def test_strings(raw: str, expected: str) -> None:
    assert value_group(raw).get_string("k") == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x\\q", "invalid escape sequence \\q in 'x\\\\q'"),
        ("a\\;b", "invalid escape sequence \\; in 'a\\\\;b'"),
        ("end\\", "ends with an escape character (write \\\\ for one), got 'end\\\\'"),
    ],
)
def test_string_errors(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        value_group(raw).get_string("k")
    assert str(raised.value) == f"t.txt:2 [a] k: {message}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1;1;1;1;", ["1", "1", "1", "1"]),
        ("0;", ["0"]),
        ("1;;2", ["1", "", "2"]),
        (";", [""]),
        ("", []),
        ("a:b/c;d\\;e;f", ["a:b/c", "d;e", "f"]),
        ("conv2d_bbox;conv2d_cov/Sigmoid", ["conv2d_bbox", "conv2d_cov/Sigmoid"]),
        ("file:///a.mp4;rtsp://cam:554/live", ["file:///a.mp4", "rtsp://cam:554/live"]),
        ("a\\sb;c\\nd;e\\\\;f", ["a b", "c\nd", "e\\", "f"]),
        (" 1 ; 2 ;", ["1 ", " 2 "]),
    ],
)
def test_string_lists(raw: str, expected: list[str]) -> None:
    assert value_group(raw).get_string_list("k") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0;", [0]), ("0;2;", [0, 2]), (" 1 ; 2 ;", [1, 2]), ("1 ;2", [1, 2]), ("", [])],
)
def test_integer_lists(raw: str, expected: list[int]) -> None:
    assert value_group(raw).get_integer_list("k") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1;1;1;1;", [1.0] * 4), ("0.3;0.3;0.3;1", [0.3, 0.3, 0.3, 1.0]), (" 1;.5", [1.0, 0.5])],
)
def test_double_lists(raw: str, expected: list[float]) -> None:
    assert value_group(raw).get_double_list("k") == expected


@pytest.mark.parametrize(
    ("raw", "getter", "message"),
    [
        ("1;;2", "get_integer_list", "item 2 of 3: expected an integer, got ''"),
        ("1 ;2", "get_double_list", "item 1 of 2: expected a number, got '1 '"),
        ("1;0;x;1", "get_double_list", "item 3 of 4: expected a number, got 'x'"),
        ("a\\q;b", "get_string_list", "invalid escape sequence \\q in 'a\\\\q;b'"),
    ],
)
def test_list_errors(raw: str, getter: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        getattr(value_group(raw), getter)("k")
    assert str(raised.value) == f"t.txt:2 [a] k: {message}"


# DeepStream's conventions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "enabled"),
    [
        ("[osd]\nborder-width=1\n", False),
        ("[tracker]\nll-config-file=x.yml\n", False),
        ("[tiled-display]\nrows=2\n", False),
        ("[sink3]\ntype=1\n", False),
        ("[source0]\nuri=x\n", False),
        ("[primary-gie]\nconfig-file=x.txt\n", False),
        ("[secondary-gie2]\nconfig-file=x.txt\n", False),
        ("[tests]\nfile-loop=1\n", True),
        ("[application]\n", True),
        ("[streammux]\nbatch-size=4\n", True),
        ("[property]\ngpu-id=0\n", True),
        ("[my-own-group]\n", True),
        ("[osd]\nenable=1\n", True),
        ("[osd]\nenable=2 # on\n", True),
        ("[sink0]\nenable=0\n", False),
        ("[tests]\nenable=0\n", False),
    ],
)
def test_enabled(group: str, enabled: bool) -> None:
    config = keyfile(group)
    assert config[next(iter(config))].enabled is enabled


def test_enable_defaults_cover_the_switchable_groups() -> None:
    assert not ENABLE_DEFAULTS["osd"] and ENABLE_DEFAULTS["tests"]


def test_enable_must_be_a_number() -> None:
    with pytest.raises(ConfigError) as raised:
        _ = keyfile("[osd]\nenable=true\n")["osd"].enabled
    assert str(raised.value) == (
        "t.txt:2 [osd] enable: expected an integer, got 'true'; "
        "DeepStream reads `enable` as a number: 1 on, 0 off"
    )


def test_groups_matching_any_number_sorted_or_in_file_order() -> None:
    config = keyfile(
        "[source10]\n[source-list]\n[source2]\n[source]\n[sink0]\n[source0]\n[source-attr-all]\n"
    )
    assert [(n, g.name) for n, g in config.groups_matching("source")] == [
        (0, "source0"),
        (2, "source2"),
        (10, "source10"),
    ]
    assert [n for n, _ in config.groups_matching("source", order="file")] == [10, 2, 0]
    assert [g.name for _, g in config.groups_matching("sink")] == ["sink0"]
    assert config.groups_matching("secondary-gie") == []
    assert config["source10"].kind == "source" and config["source10"].number == 10
    assert config["source-list"].number is None


def test_groups_matching_refuses_two_groups_with_one_number() -> None:
    config = keyfile("[source1]\n[source01]\n")
    with pytest.raises(ConfigError) as raised:
        config.groups_matching("source")
    assert str(raised.value) == (
        "t.txt:2 [source01]: has the same number as [source1]; give each group its own"
    )


def test_numbered_keys() -> None:
    group = keyfile(
        "[g]\nbbox-border-color=1;1;1;1\nbbox-border-color17=0;0;1;1\n"
        "bbox-border-color0=1;0;0;1\nbbox-border-colorx=0\nbbox-bg-color0=0;0;0;1\n"
    )["g"]
    assert [(n, e.line) for n, e in group.numbered_keys("bbox-border-color")] == [(0, 4), (17, 3)]
    assert [n for n, _ in group.numbered_keys("bbox-bg-color")] == [0]
    assert group.numbered_keys("class-") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/abs/model.onnx", "/abs/model.onnx"),
        ("model.onnx", "{configs}/model.onnx"),
        ("../models/m.engine", "{root}/models/m.engine"),
        ("file://../../streams/x.mp4", "file://{top}/streams/x.mp4"),
        ("file://x.mp4", "file://{configs}/x.mp4"),
        ("file:///abs/x.mp4", "file:///abs/x.mp4"),
        ("file:/abs/x.mp4", "file:///abs/x.mp4"),
        ("rtsp://cam:554/live", "rtsp://cam:554/live"),
        ("http://host/x.mp4", "http://host/x.mp4"),
        ("csi:0", "csi:0"),
    ],
)
def test_resolve_path(tmp_path: Path, value: str, expected: str) -> None:
    configs = tmp_path / "root" / "configs"
    configs.mkdir(parents=True)
    config = configs / "app.txt"
    config.write_text("[a]\n")
    top = tmp_path.resolve()
    names = {"configs": configs.resolve(), "root": top / "root", "top": top}
    assert resolve_path(value, config) == expected.format(**names)


def test_resolve_path_follows_a_link_to_the_config(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "app.txt").write_text("[a]\n")
    os.symlink(real / "app.txt", tmp_path / "link.txt")
    assert resolve_path("model.onnx", tmp_path / "link.txt") == str(real.resolve() / "model.onnx")


def test_get_path_unescapes_then_resolves(tmp_path: Path) -> None:
    path = tmp_path / "app.txt"
    path.write_text("[a]\nlabels=my\\slabels.txt\n")
    assert read_keyfile(path)["a"].get_path("labels") == str(tmp_path.resolve() / "my labels.txt")


def test_get_path_needs_the_file() -> None:
    with pytest.raises(ConfigError, match="not read from a file"):
        value_group("x.onnx").get_path("k")
