"""DeepStream's camera sources (type=1 V4L2, type=5 CSI) and the source list of DeepStream 6.2+
(``[source-list]`` with ``[source-attr-all]``, nvmultiurisrcbin and its REST server)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cli_tools import PANOPTES
from panoptes import ConfigError, Pipeline, SourceError
from panoptes.config.deepstream import translate
from panoptes.config.deepstream.translate import translate_app_config
from panoptes.config.loader import load_config
from panoptes.media.reader import open_reader

VIDEOS = (Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos").resolve()
PEOPLE = VIDEOS / "one-by-one-person-detection.mp4"
PARKING = VIDEOS / "person-bicycle-car-detection.mp4"
# No machine running the tests has this camera.
MISSING_CAMERA = 57


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU path, whatever the machine: these tests are about the sources."""
    monkeypatch.setattr(translate, "gpu_available", lambda: False)


def test_a_v4l2_camera_source_reads_its_device(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text(
        "[tests]\nfile-loop=1\n"
        "[source0]\nenable=1\ntype=1\ncamera-v4l2-dev-node=3\ncamera-width=1280\n"
        "camera-height=720\ncamera-fps-n=30000\ncamera-fps-d=1001\n"
        "[source1]\nenable=1\ntype=1\n"
        "[sink0]\nenable=1\ntype=1\n"
    )
    translation = translate_app_config(tmp_path / "app.txt")
    # A camera never loops, whatever [tests] file-loop says.
    assert translation.config["sources"] == [
        {"uri": "v4l2:///dev/video3?width=1280&height=720&fps=30000/1001"},
        {"uri": "v4l2:///dev/video0"},
    ]
    assert not [note for note in translation.notes if "camera" in note.place]
    reader = open_reader(translation.config["sources"][0]["uri"], name="cam")
    assert reader.uri.startswith("v4l2://")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("v4l2://dev/video0", "expected v4l2:///dev/videoN"),
        ("v4l2:///dev/video0?width=640", "width and height together"),
        ("v4l2:///dev/video0?fps=0", "fps='0' must be a positive rate"),
        ("v4l2:///dev/video0?size=640x480", "unknown camera parameter(s) size"),
        ("v4l2:///dev/video0?width=-1&height=480", "camera parameter width='-1'"),
    ],
)
def test_a_malformed_camera_uri_is_refused(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=re.escape(message)):
        open_reader(uri, name="cam")


def test_a_device_that_is_no_camera_is_said_so() -> None:
    # FFmpeg's v4l2 device opens it and asks it for video: /dev/null answers with ENOTTY.
    reader = open_reader("v4l2:///dev/null?width=640&height=480&fps=30", name="cam")
    with pytest.raises(SourceError) as caught:
        reader.open()
    assert str(caught.value).startswith("cam: cannot capture from /dev/null (v4l2): ")
    assert str(caught.value).endswith(
        "check that the camera offers video_size 640x480, framerate 30/1"
    )


def test_a_csi_camera_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text(
        f"[source0]\nenable=1\ntype=2\nuri=file://{PEOPLE}\n"
        "[source1]\nenable=1\ntype=5\ncamera-csi-sensor-id=1\n"
        "[sink0]\nenable=1\ntype=1\n"
    )
    with pytest.raises(
        ConfigError, match=r"app\.txt:7 \[source1\] type: type=5 \(the CSI camera 1"
    ):
        translate_app_config(tmp_path / "app.txt")


def test_a_missing_camera_fails_on_the_bus_and_the_other_source_plays_to_its_end(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.txt").write_text(
        f"[source0]\nenable=1\ntype=1\ncamera-v4l2-dev-node={MISSING_CAMERA}\n"
        "camera-width=640\ncamera-height=480\n"
        f"[source1]\nenable=1\ntype=2\nuri=file://{PARKING}\n"
        "[sink0]\nenable=1\ntype=1\n"
    )
    config, base_dir = load_config(tmp_path / "app.txt")
    summary = Pipeline(config, base_dir=base_dir).run()
    streams = {stream.source_id: stream for stream in summary.streams}
    assert streams[0].state == "failed" and streams[0].frames == 0
    assert streams[1].state == "ended" and streams[1].frames == 459
    (error,) = summary.errors
    assert error.origin == f"v4l2:///dev/video{MISSING_CAMERA}?width=640&height=480"
    assert error.text == f"sources[0].uri: no such device: /dev/video{MISSING_CAMERA}"


def _source_list_app(folder: Path, *, http_port: int = 0) -> Path:
    relative = os.path.relpath(PARKING, folder)
    (folder / "app.txt").write_text(
        "[source-list]\n"
        "num-source-bins=3\n"
        f"list=file://{PEOPLE};file://{relative};usb:{MISSING_CAMERA};\n"
        "sensor-id-list=UniqueSensorId1;UniqueSensorId2;UniqueSensorId3\n"
        "sensor-name-list=entrance;parking;lobby\n"
        "use-nvmultiurisrcbin=1\n"
        "max-batch-size=4\n"
        "http-ip=127.0.0.1\n"
        f"http-port={http_port}\n"
        "sgie-batch-size=40\n"
        "\n"
        "[source-attr-all]\n"
        "enable=1\n"
        "type=3\n"
        "num-sources=1\n"
        "gpu-id=0\n"
        "latency=100\n"
        "drop-frame-interval=2\n"
        "camera-width=640\n"
        "camera-height=480\n"
        "\n"
        "[source1]\n"
        "drop-frame-interval=1\n"
        "\n"
        "[streammux]\n"
        "batch-size=2\n"
        "drop-pipeline-eos=1\n"
        "live-source=1\n"
        "\n"
        "[sink0]\nenable=1\ntype=1\n"
    )
    return folder / "app.txt"


def test_a_source_list_becomes_named_sources_and_the_http_server(tmp_path: Path) -> None:
    translation = translate_app_config(_source_list_app(tmp_path, http_port=9000))
    config = translation.config
    assert config["sources"] == [
        {"uri": str(PEOPLE), "name": "entrance", "drop_frame_interval": 2},
        # [source1] changes the second source's drop-frame-interval; a relative file:// entry
        # is relative to the config's folder.
        {"uri": str(PARKING), "name": "parking"},
        {
            "uri": f"v4l2:///dev/video{MISSING_CAMERA}?width=640&height=480",
            "name": "lobby",
            "drop_frame_interval": 2,
        },
    ]
    assert config["http"] == {"host": "127.0.0.1", "port": 9000}
    assert config["mux"]["batch_size"] == 4  # max-batch-size, in place of [streammux]'s
    assert config["keep_alive"] is True  # drop-pipeline-eos: streams may be added later
    notes = [str(note) for note in translation.notes]
    for text in (
        "app.txt:14 [source-attr-all] type: approximated: each source's kind comes from its list",
        "app.txt:15 [source-attr-all] num-sources: approximated",
        "app.txt:4 [source-list] sensor-id-list: approximated",
        "app.txt:10 [source-list] sgie-batch-size: approximated",
        "app.txt:17 [source-attr-all] latency: approximated",
    ):
        assert sum(note.startswith(text) for note in notes) == 1, (text, notes)
    assert not any("unknown" in note or "unsupported" in note for note in notes), notes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("[source-attr-all]\n", "[ignored]\n"),
            "app.txt:1 [source-list]: needs a [source-attr-all]",
        ),
        (("num-source-bins=3", "num-source-bins=2"), "app.txt:3 [source-list] list: has 3 entries"),
        (
            ("sensor-name-list=entrance;parking;lobby", "sensor-name-list=entrance"),
            "app.txt:5 [source-list] sensor-name-list: has 1 entries",
        ),
        (
            ("[source1]\n", "[source7]\n"),
            "[source7]: there are 3 listed sources: [source0] to [source2]",
        ),
        (
            (f"usb:{MISSING_CAMERA};", "lobby.mp4;"),
            "app.txt:3 [source-list] list (entry 3): 'lobby.mp4' is not a source",
        ),
        (
            (f"usb:{MISSING_CAMERA};", "csi:0;"),
            "app.txt:3 [source-list] list (entry 3): type=5 (the CSI camera 0",
        ),
        (
            ("http-port=0", "http-port=http"),
            "app.txt:9 [source-list] http-port: expected a port number",
        ),
    ],
)
def test_a_broken_source_list_names_its_place(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    app = _source_list_app(tmp_path)
    app.write_text(app.read_text().replace(*change))
    with pytest.raises(ConfigError) as caught:
        translate_app_config(app)
    assert message in str(caught.value), str(caught.value)


def _start(app: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*PANOPTES, "run", str(app), "--no-progress", "--set", "sources[0].max_frames=20"],
        cwd=app.parent,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"REST API at (http://\S+)", line)
        if found:
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no server URL printed; exit code {process.poll()}")


def _wait(
    client: httpx.Client, done: object, timeout_s: float = 60
) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = {row["name"]: row for row in client.get("/api/v1/streams").json()["streams"]}
        if done(rows):  # type: ignore[operator]
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def test_a_source_list_runs_with_deepstreams_rest_api(tmp_path: Path) -> None:
    process, url = _start(_source_list_app(tmp_path))
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            rows = _wait(
                client,
                lambda rows: (
                    {rows[n]["state"] for n in ("entrance", "parking", "lobby")}
                    == {"ended", "failed"}
                ),
            )
            # The missing camera fails by name; the clips play to their end.
            assert rows["lobby"]["state"] == "failed"
            assert f"no such device: /dev/video{MISSING_CAMERA}" in str(rows["lobby"]["error"])
            assert rows["entrance"]["state"] == "ended" and rows["entrance"]["frames_out"] == 20
            assert rows["parking"]["state"] == "ended" and rows["parking"]["frames_out"] == 459
            # drop-pipeline-eos: the pipeline waits for streams added through the REST API.
            added = client.post(
                "/api/v1/stream/add",
                json={
                    "key": "sensor",
                    "value": {
                        "camera_id": "UniqueSensorId4",
                        "camera_name": "hall",
                        "camera_url": f"file://{PEOPLE}",
                        "change": "camera_add",
                    },
                },
            )
            assert added.status_code == 200, added.text
            _wait(client, lambda rows: "hall" in rows and rows["hall"]["frames_out"] > 0)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert f"ERROR: lobby: sources[2].uri: no such device: /dev/video{MISSING_CAMERA}" in stderr
