"""``panoptes run --workers N``, ``--gpus``, ``--share`` as a user runs them: real worker
processes on the shared clips and test patterns, the REST API and /metrics of the whole, a
worker killed and started again, Ctrl-C."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cli_tools import PANOPTES, ffprobe, panoptes

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
PERSON = str(VIDEOS / "one-by-one-person-detection.mp4")
PARKING = str(VIDEOS / "person-bicycle-car-detection.mp4")


class Run:
    """``panoptes run CONFIG ARGS`` in the background, its stderr gathered line by line."""

    def __init__(
        self, config: Path, *args: str, env: dict[str, str] | None = None, group: bool = False
    ) -> None:
        self.process = subprocess.Popen(
            [*PANOPTES, "run", str(config), "--no-progress", *args],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=group,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.stderr)
            if found:
                return found
            if self.process.poll() is not None:
                self._reader.join(5)
                found = re.search(pattern, self.stderr)
                if found:
                    return found
                break
            time.sleep(0.05)
        pytest.fail(f"{pattern!r} not printed; exit code {self.process.poll()}:\n{self.stderr}")

    def url(self) -> str:
        return self.wait_for(r"REST API and /metrics of the workers at (http://\S+)").group(1)

    def finish(self, timeout_s: float = 120) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(10)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def start() -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start_run(config: Path, *args: str, **kwargs: Any) -> Run:
        run = Run(config, *args, **kwargs)
        runs.append(run)
        return run

    yield start_run
    for run in runs:
        run.close()


def poll(condition: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def write_config(folder: Path, config: dict[str, Any], name: str = "pipeline.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


def pattern(name: str, width: int = 160, height: int = 90) -> dict[str, Any]:
    """An endless ball pattern at 15 fps, paced like a camera."""
    return {
        "type": "test-source",
        "name": name,
        "width": width,
        "height": height,
        "fps": 15,
        "frames": None,
        "real_time": True,
    }


def summary_frames(stderr: str) -> dict[str, int]:
    """The summary table's frames per stream name."""
    frames = {}
    for line in stderr.splitlines():
        found = re.match(r"^(\S+)\s+(ended|failed|playing|removed)\s+(\d+)\s", line)
        if found:
            frames[found.group(1)] = int(found.group(3))
    return frames


def records(*paths: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def frame_numbers(rows: list[dict[str, Any]]) -> dict[int, list[int]]:
    numbers: dict[int, list[int]] = collections.defaultdict(list)
    for row in rows:
        numbers[row["source_id"]].append(row["frame_num"])
    return {source_id: sorted(found) for source_id, found in numbers.items()}


def metric_samples(text: str, name: str) -> list[Any]:
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return list(family.samples)
    return []


# -- a run on clips, with one worker and with two ------------------------------------------------


def test_two_workers_give_the_same_streams_as_one(tmp_path: Path) -> None:
    config = {
        "sources": [
            {"uri": PERSON, "max_frames": 24, "name": "person"},
            {"uri": PARKING, "max_frames": 24, "name": "parking"},
            {"uri": PERSON, "max_frames": 16, "name": "again"},
        ],
        # One frame a batch: the same model calls in both runs, so the same detections.
        "mux": {"batch_size": 1},
        "infer": [{"model": "yolox-nano", "threshold": 0.4}],
        "sinks": [{"type": "jsonl", "path": "out/meta.jsonl"}],
        "perf": {"interval_s": 1},
    }
    one = write_config(tmp_path / "one", config)
    two = write_config(tmp_path / "two", config)
    alone = panoptes("run", str(one), "--no-progress", cwd=one.parent)
    shared = panoptes("run", str(two), "--workers", "2", "--no-progress", cwd=two.parent)
    assert alone.returncode == 0, alone.stderr
    assert shared.returncode == 0, shared.stderr

    assert summary_frames(shared.stderr) == summary_frames(alone.stderr)
    assert summary_frames(shared.stderr) == {"person": 24, "parking": 24, "again": 16}
    assert re.search(r"^total\s+64\s", shared.stderr, re.MULTILINE)
    assert "worker 0 (pid " in shared.stderr and "stream(s) 0, 2" in shared.stderr
    assert re.search(r"^\s+1\s+-\s+\d+\s+ended\s+24\s+0$", shared.stderr, re.MULTILINE)

    expected = records(one.parent / "out" / "meta.jsonl")
    first = records(two.parent / "out" / "meta.w0.jsonl")
    second = records(two.parent / "out" / "meta.w1.jsonl")
    # Source ids are the streams' places in the config in every worker.
    assert {row["source_id"] for row in first} == {0, 2}
    assert {row["source_id"] for row in second} == {1}
    assert not (two.parent / "out" / "meta.jsonl").exists()

    def by_frame(rows: list[dict[str, Any]]) -> dict[tuple[int, int], list[Any]]:
        return {
            (row["source_id"], row["frame_num"]): sorted(
                (o["label"], [round(v) for v in o["bbox"]]) for o in row["objects"]
            )
            for row in rows
        }

    assert by_frame(first + second) == by_frame(expected)
    assert sum(len(row["objects"]) for row in expected) >= 10  # people and cars were found


# -- the REST API and /metrics of the whole ------------------------------------------------------


def test_http_lists_every_workers_streams_and_metrics(
    tmp_path: Path, start: Callable[..., Run]
) -> None:
    config = write_config(
        tmp_path,
        {
            "sources": [pattern("gate"), pattern("hall"), pattern("yard")],
            "http": {"host": "127.0.0.1"},
            "perf": {"interval_s": 1},
        },
    )
    run = start(config, "--workers", "2", "--http", "0")
    with httpx.Client(base_url=run.url(), timeout=10) as client:

        def playing() -> list[dict[str, Any]] | None:
            rows = client.get("/api/v1/streams").json()["streams"]
            ok = len(rows) == 3 and all(r["state"] == "playing" and r["fps"] for r in rows)
            return rows if ok else None

        rows = poll(playing, "three streams playing")
        assert [(r["source_id"], r["name"], r["worker"]) for r in rows] == [
            (0, "gate", 0),
            (1, "hall", 1),
            (2, "yard", 0),
        ]
        assert all(r["gpu"] is None for r in rows)
        assert client.get("/api/v1/streams/1").json()["name"] == "hall"
        assert client.get("/api/v1/streams/7").status_code == 404

        workers = client.get("/api/v1/workers").json()["workers"]
        assert [(w["index"], w["state"], w["streams"]) for w in workers] == [
            (0, "running", [0, 2]),
            (1, "running", [1]),
        ]
        health = client.get("/api/v1/health").json()
        assert health["streams"] == 3 and health["workers_running"] == 2
        assert health["pipeline"] == "playing"

        text = client.get("/metrics").text
        frames = {
            (s.labels["name"], s.labels["worker"]): s.value
            for s in metric_samples(text, "panoptes_stream_frames_out")
            if s.name.endswith("_total")
        }
        assert set(frames) == {("gate", "0"), ("hall", "1"), ("yard", "0")}
        assert min(frames.values()) > 0
        up = {s.labels["worker"]: s.value for s in metric_samples(text, "panoptes_worker_up")}
        assert up == {"0": 1.0, "1": 1.0}
        elements = {
            (s.labels["element"], s.labels["worker"])
            for s in metric_samples(text, "panoptes_element_batches")
        }
        assert elements == {("fakesink0", "0"), ("fakesink0", "1")}
        page = client.get("/")
        assert page.status_code == 200 and "api/v1/streams" in page.text
        assert client.get("/snapshot.jpg").status_code == 404
        url = str(client.base_url)
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.stderr
    assert "SIGINT: stopping" in run.stderr
    assert set(summary_frames(run.stderr)) == {"gate", "hall", "yard"}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/api/v1/health", timeout=2)


# -- a worker killed mid-run --------------------------------------------------------------------


def test_killed_worker_is_started_again_with_its_streams(
    tmp_path: Path, start: Callable[..., Run]
) -> None:
    frames = 50
    clips = [("a", PERSON), ("b", PARKING), ("c", PERSON), ("d", PARKING)]
    config = write_config(
        tmp_path,
        {
            "sources": [
                {"uri": uri, "name": name, "max_frames": frames, "real_time": True}
                for name, uri in clips
            ],
            "sinks": [{"type": "jsonl", "path": "out/meta.jsonl"}],
            "workers": {"count": 2, "restart_backoff_s": 0.5},
            "http": {"host": "127.0.0.1"},
            "perf": {"interval_s": 1},
        },
    )
    run = start(config, "--http", "0")
    with httpx.Client(base_url=run.url(), timeout=10) as client:

        def worker_one_going() -> bool:
            rows = client.get("/api/v1/streams").json()["streams"]
            return all(r["frames_out"] >= 10 for r in rows if r["worker"] == 1)

        poll(worker_one_going, "worker 1's streams under way")
        victim = client.get("/api/v1/workers").json()["workers"][1]
        os.kill(victim["pid"], signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            info = client.get("/api/v1/workers").json()["workers"][1]
            return info if info["restarts"] == 1 and info["state"] == "running" else None

        info = poll(restarted, "worker 1 started again")
        assert info["pid"] != victim["pid"] and info["streams"] == [1, 3]
        assert info["outputs_tag"] == "w1.r1"
        text = client.get("/metrics").text
        restarts = {
            s.labels["worker"]: s.value
            for s in metric_samples(text, "panoptes_worker_restarts")
            if s.name.endswith("_total")
        }
        assert restarts == {"0": 0.0, "1": 1.0}
    assert run.finish() == 0, run.stderr
    assert re.search(
        r"WARNING: worker 1: process \d+ died \(killed by SIGKILL\); starting it again in "
        r"0\.5 s with stream\(s\) 1, 3",
        run.stderr,
    ), run.stderr
    assert summary_frames(run.stderr) == {name: frames for name, _ in clips}

    out = tmp_path / "out"
    everything = list(range(frames))
    # The other worker went on undisturbed: each of its frames once.
    assert frame_numbers(records(out / "meta.w0.jsonl")) == {0: everything, 2: everything}
    # The killed worker's streams played again from their start, into new files.
    assert frame_numbers(records(out / "meta.w1.r1.jsonl")) == {1: everything, 3: everything}
    # What the killed process had written (the file is buffered) is the start of its streams.
    before = frame_numbers(records(out / "meta.w1.jsonl"))
    assert all(numbers == list(range(len(numbers))) for numbers in before.values())


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_stops_every_worker_with_complete_files(
    tmp_path: Path, start: Callable[..., Run]
) -> None:
    config = write_config(
        tmp_path,
        {
            "sources": [pattern(name) for name in ("a", "b", "c")],
            "sinks": [
                {"type": "file", "path": "out/video.mp4"},
                {"type": "jsonl", "path": "out/meta.jsonl"},
            ],
            "perf": {"interval_s": 1},
        },
    )
    # In its own process group, signalled as a terminal's Ctrl-C signals: every process of it.
    run = start(config, "--workers", "2", group=True)

    # Stopped once every stream has played through two reports: on a loaded machine a worker's
    # first frames can come seconds after the other's, so no fixed sleep is long enough.
    def reports_with_every_stream_playing() -> int:
        reports = [line for line in run.lines if line.startswith("**PERF: total ")]
        return sum(all(re.search(rf"\| {name} [1-9]", line) for name in "abc") for line in reports)

    deadline = time.monotonic() + 60
    while reports_with_every_stream_playing() < 2:
        assert run.process.poll() is None and time.monotonic() < deadline, run.stderr
        time.sleep(0.05)
    os.killpg(run.process.pid, signal.SIGINT)
    assert run.finish() == 0, run.stderr
    counts = summary_frames(run.stderr)
    assert set(counts) == {"a", "b", "c"} and min(counts.values()) >= 2

    out = tmp_path / "out"
    written = frame_numbers(records(out / "meta.w0.jsonl", out / "meta.w1.jsonl"))
    for source_id, name in enumerate("abc"):
        assert written[source_id] == list(range(counts[name]))
        video = out / f"video.w{source_id % 2}_{source_id}.mp4"
        assert int(ffprobe(video)["nb_read_frames"]) == counts[name]


# -- GPUs, faked ---------------------------------------------------------------------------------


def test_faked_gpus_one_worker_each_and_adds_go_to_the_least_loaded(
    tmp_path: Path, start: Callable[..., Run]
) -> None:
    # Worker 0 gets three small streams, worker 1 a large one and a small one: by count worker 1
    # has fewer, by decoded pixels worker 0 has much less.
    sources = [pattern("s0"), pattern("big", 640, 360), pattern("s2"), pattern("s3"), pattern("s4")]
    config = write_config(
        tmp_path,
        {"sources": sources, "http": {"host": "127.0.0.1"}, "perf": {"interval_s": 0}},
    )
    run = start(config, "--gpus", "all", "--http", "0", env={"PANOPTES_FAKE_GPUS": "2"})
    assert "worker 1 (gpu 1, pid " in run.wait_for(r"worker 1 \(gpu 1, pid \d+\).*").group(0)
    with httpx.Client(base_url=run.url(), timeout=10) as client:

        def measured() -> list[dict[str, Any]] | None:
            workers = client.get("/api/v1/workers").json()["workers"]
            rows = client.get("/api/v1/streams").json()["streams"]
            ok = all(r["fps"] for r in rows) and all(w["load"] > 0 for w in workers)
            return workers if ok else None

        workers = poll(measured, "every stream measured")
        assert [(w["gpu"], w["visible_devices"], w["streams"]) for w in workers] == [
            (0, "0", [0, 2, 4]),
            (1, "1", [1, 3]),
        ]
        assert workers[0]["load"] < workers[1]["load"]
        rows = client.get("/api/v1/streams").json()["streams"]
        assert {r["name"]: r["gpu"] for r in rows} == {"s0": 0, "big": 1, "s2": 0, "s3": 1, "s4": 0}

        added = client.post("/api/v1/streams", json=pattern("added"))
        assert added.status_code == 201, added.text
        assert (added.json()["source_id"], added.json()["worker"], added.json()["gpu"]) == (5, 0, 0)
        bad = client.post("/api/v1/streams", json={"uri": "foo://camera"})
        assert bad.status_code == 400 and "unknown URI scheme" in bad.json()["detail"]

        camera = {
            "key": "sensor",
            "value": {
                "camera_id": "door",
                "camera_url": "test://ball?width=160&height=90&fps=15",
                "change": "camera_add",
            },
        }
        reply = client.post("/api/v1/stream/add", json=camera).json()
        assert reply["reason"] == "STREAM_ADD_SUCCESS" and reply["source_id"] == 6
        again = client.post("/api/v1/stream/add", json=camera)
        assert again.status_code == 409

        def playing(source_id: int) -> Callable[[], bool]:
            def check() -> bool:
                row = client.get(f"/api/v1/streams/{source_id}").json()
                return bool(row["state"] == "playing" and row["frames_out"] > 0)

            return check

        poll(playing(5), "the added stream playing")
        poll(playing(6), "the camera playing")
        door = client.get("/api/v1/streams/6").json()
        assert door["camera_id"] == "door" and door["worker"] == 0

        camera["value"]["change"] = "camera_remove"
        removed = client.post("/api/v1/stream/remove", json=camera).json()
        assert removed["reason"] == "STREAM_REMOVE_SUCCESS" and removed["source_id"] == 6
        assert client.delete("/api/v1/streams/5").status_code == 204
        assert client.delete("/api/v1/streams/5").status_code == 404
        listed = [r["source_id"] for r in client.get("/api/v1/streams").json()["streams"]]
        assert listed == [0, 1, 2, 3, 4]
        assert client.get("/api/v1/workers").json()["workers"][0]["streams"] == [0, 2, 4]
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.stderr


# -- shares and errors ---------------------------------------------------------------------------


def test_shares_run_every_source_once_between_them(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "sources": [
                {"type": "test-source", "name": f"cam{i}", "frames": 5 + i, "width": 64}
                for i in range(3)
            ],
            "sinks": [{"type": "jsonl", "path": "out/meta.jsonl"}],
        },
    )
    for ordinal in (0, 1):
        result = panoptes("run", str(config), "--share", f"{ordinal}/2", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    first = frame_numbers(records(out / "meta.s0.w0.jsonl"))
    assert first == {0: list(range(5)), 2: list(range(7))}
    assert frame_numbers(records(out / "meta.s1.w0.jsonl")) == {1: list(range(6))}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--gpus", "all"], {"CUDA_VISIBLE_DEVICES": ""}, "--gpus all: no NVIDIA GPU found"),
        (["--gpus", "0,x"], {}, "--gpus: expected 'all' or GPU ids such as [0, 1], not '0,x'"),
        (["--gpus", "3"], {"PANOPTES_FAKE_GPUS": "2"}, "--gpus: no GPU 3 on this machine"),
        (["--share", "2/2"], {}, "--share 2/2: the ordinal must be 0 to 1"),
        (["--share", "3/4"], {}, "--share 3/4: no source falls to this share (3 source(s)"),
        (["--workers", "0"], {}, "Invalid value for '--workers'"),
        (["--workers", "2", "--set", "sources[1].uri=foo://x"], {}, "sources[1].uri: unknown URI"),
    ],
)
def test_bad_worker_options_exit_2_naming_the_problem(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    config = write_config(
        tmp_path, {"sources": [{"uri": f"test://ball?frames={n}"} for n in (3, 4, 5)]}
    )
    environment = {key: value for key, value in os.environ.items() if key != "PANOPTES_FAKE_GPUS"}
    result = subprocess.run(
        [*PANOPTES, "run", str(config), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_a_worker_that_cannot_build_stops_the_run(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "sources": [{"type": "test-source", "frames": 3} for _ in range(2)],
            "infer": [{"model": str(tmp_path / "missing.onnx")}],
        },
    )
    result = panoptes("run", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert re.search(r"error: worker [01]: infer\[0\]", result.stderr), result.stderr
    assert "missing.onnx" in result.stderr


def test_a_worker_given_up_fails_its_streams_only(
    tmp_path: Path, start: Callable[..., Run]
) -> None:
    config = write_config(
        tmp_path,
        {
            "sources": [
                {"uri": PERSON, "name": "kept", "max_frames": 40, "real_time": True},
                {"uri": PARKING, "name": "lost", "max_frames": 40, "real_time": True},
            ],
            "workers": {"count": 2, "restart_attempts": 0},
            "perf": {"interval_s": 0.5},
        },
    )
    run = start(config)
    pid = int(run.wait_for(r"worker 1 \(pid (\d+)\)").group(1))
    run.wait_for(r"\*\*PERF: .*\| lost [1-9]")
    os.kill(pid, signal.SIGKILL)
    assert run.finish() == 1, run.stderr
    assert re.search(
        r"ERROR: worker 1: died \(killed by SIGKILL\) after 0 restart\(s\); stream\(s\) 1 given up",
        run.stderr,
    ), run.stderr
    assert re.search(r"^kept\s+ended\s+40\s", run.stderr, re.MULTILINE), run.stderr
    assert re.search(r"^lost\s+failed\s+\d+\s", run.stderr, re.MULTILINE), run.stderr


def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, start: Callable[..., Run]
) -> None:
    config = write_config(
        tmp_path, {"sources": [pattern("a"), pattern("b")], "perf": {"interval_s": 0.5}}
    )
    run = start(config, "--workers", "2")
    pids = [int(run.wait_for(rf"worker {index} \(pid (\d+)\)").group(1)) for index in (0, 1)]
    run.wait_for(r"\*\*PERF: ")
    run.process.kill()
    run.finish()

    def gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            # A zombie has exited: it only waits for its parent's parent to reap it.
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] != "Z":
                    return False
        return True

    poll(gone, "the workers to exit", timeout_s=30)
