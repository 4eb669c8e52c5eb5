"""What each worker runs: its GPU, its sources, outputs that do not clash."""

from __future__ import annotations

from pathlib import Path

import pytest

from panoptes import ConfigError
from panoptes.config.loader import parse_config
from panoptes.workers import FAKE_GPUS_ENV, discover_gpus, tagged_path, worker_config, worker_gpus


@pytest.mark.parametrize(
    ("path", "tag", "expected"),
    [
        ("out/meta.jsonl", "w1", "out/meta.w1.jsonl"),
        ("out/video_{source_id}.mp4", "s2.w0", "out/video_{source_id}.s2.w0.mp4"),
        ("/data/clips/tiled.mkv", "w0.r1", "/data/clips/tiled.w0.r1.mkv"),
        ("meta", "w3", "meta.w3"),
        ("out/.hidden", "w1", "out/.hidden.w1"),
        ("./a.b/c.jsonl", "w0", "./a.b/c.w0.jsonl"),
    ],
)
def test_tagged_path(path: str, tag: str, expected: str) -> None:
    assert tagged_path(path, tag) == expected


def _config() -> dict[str, object]:
    return {
        "sources": [
            {"uri": "a.mp4", "decoder": "nvdec", "gpu_id": 3},
            {"type": "test-source", "name": "pattern"},
            {"uri": "rtsp://camera/1", "decoder": "cpu"},
        ],
        "infer": [
            {"model": "yolox-nano", "backend": "torch", "device": "cuda", "gpu_id": 2},
            {"model": "yolox-nano", "name": "second"},
        ],
        "sinks": [
            {"type": "jsonl", "path": "out/meta.jsonl"},
            {"type": "jsonl", "path": "-"},
            {"type": "file", "path": "out/video.mp4"},
            {"type": "mqtt", "host": "127.0.0.1", "topic": "t"},
            {"type": "kafka", "brokers": "127.0.0.1:9092", "topic": "t", "outbox": "ob/k.sqlite"},
            {"type": "rtsp", "port": 8554},
            {"type": "rtsp", "port": 0, "name": "anyport"},
            {"type": "snapshot", "path": "shots"},
            {"type": "web-view"},
        ],
        "http": {"port": 8080},
        "perf": {"interval_s": 5},
    }


def test_worker_config_renames_outputs_and_points_at_its_gpu() -> None:
    config = parse_config(_config())
    sources = [config.sources[0], config.sources[2]]
    ours = worker_config(config, sources, index=2, worker_tag="w2", run_tag="w2.r1", gpu=5)
    assert [s.uri for s in ours.sources] == ["a.mp4", "rtsp://camera/1"]
    # CUDA_VISIBLE_DEVICES shows the worker its GPU as device 0; CPU settings stay.
    assert [getattr(s, "gpu_id", None) for s in ours.sources] == [0, 0]
    assert [m.gpu_id for m in ours.infer] == [0, 0]
    sinks = {sink.name: sink for sink in ours.sinks}
    assert list(sinks) == [
        "jsonl0",
        "jsonl1",
        "file2",
        "mqtt3",
        "kafka4",
        "rtsp5",
        "anyport",
        "snapshot7",
    ]
    assert sinks["jsonl0"].path == "out/meta.w2.r1.jsonl"
    assert sinks["jsonl1"].path == "-"
    assert sinks["file2"].path == "out/video.w2.r1.mp4"
    # Outboxes keep the worker's tag across restarts: a restarted worker sends what is left.
    assert sinks["mqtt3"].outbox == "out/outbox-mqtt3.w2.sqlite"
    assert sinks["kafka4"].outbox == "ob/k.w2.sqlite"
    assert sinks["rtsp5"].port == 8556
    assert sinks["anyport"].port == 0
    assert sinks["snapshot7"].path == "shots"
    assert ours.http is None and ours.perf.interval_s == 0
    # The config itself is unchanged.
    assert config.sinks[0].path == "out/meta.jsonl" and config.http is not None


def test_worker_config_without_gpu_keeps_the_devices() -> None:
    config = parse_config(_config())
    ours = worker_config(config, config.sources, index=0, worker_tag="w0", run_tag="w0", gpu=None)
    assert ours.sources[0].gpu_id == 3 and ours.infer[0].gpu_id == 2
    assert [(m.instances, m.threads) for m in ours.infer] == [(None, None), (None, None)]


@pytest.mark.parametrize(
    ("cores", "instances", "threads", "expected"),
    [
        (1, None, None, (1, 1)),
        (8, None, None, (4, 2)),
        (3, None, None, (3, 1)),
        (8, 2, None, (2, 4)),
        (8, None, 1, (4, 1)),
        (8, 1, 1, (1, 1)),
    ],
)
def test_cpu_models_take_the_workers_share_of_the_cores(
    cores: int, instances: int | None, threads: int | None, expected: tuple[int, int]
) -> None:
    data = _config()
    data["infer"] = [
        {"model": "yolox-nano", "backend": "torch", "device": "cuda"},
        {"model": "yolox-nano", "instances": instances, "threads": threads},
    ]
    config = parse_config(data)
    ours = worker_config(
        config, config.sources, index=0, worker_tag="w0", run_tag="w0", gpu=None, cores=cores
    )
    assert (ours.infer[0].instances, ours.infer[0].threads) == (None, None)  # not on the CPU
    assert (ours.infer[1].instances, ours.infer[1].threads) == expected


def test_worker_config_of_web_view_only_gets_a_fakesink() -> None:
    config = parse_config({"sources": [{"uri": "a.mp4"}], "sinks": [{"type": "web-view"}]})
    ours = worker_config(config, config.sources, index=0, worker_tag="w0", run_tag="w0", gpu=None)
    assert [sink.type for sink in ours.sinks] == ["fakesink"]


def test_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")
    assert discover_gpus() == [0, 1, 2]
    assert worker_gpus(None, "all") == [0, 1, 2]
    assert worker_gpus(5, "all") == [0, 1, 2, 0, 1]
    assert worker_gpus(None, [2, 0]) == [2, 0]
    with pytest.raises(ConfigError, match="no GPU 7 on this machine"):
        worker_gpus(None, [7])
    monkeypatch.setenv(FAKE_GPUS_ENV, "two")
    with pytest.raises(ConfigError, match="expected a number of GPUs"):
        discover_gpus()


def test_visible_devices_list_the_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert discover_gpus() == [1, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert discover_gpus() == []
    with pytest.raises(ConfigError, match="--gpus all: no NVIDIA GPU found"):
        worker_gpus(None, "all")


def test_without_gpus_the_count_is_the_workers() -> None:
    assert worker_gpus(None, None) == [None]
    assert worker_gpus(3, None) == [None, None, None]


@pytest.mark.parametrize(
    ("workers", "message"),
    [
        ({"gpus": "some"}, "workers.gpus: Value error, expected 'all' or GPU ids"),
        ({"gpus": [0, 0]}, "a GPU is named twice"),
        ({"count": 0}, "workers.count: Input should be greater than or equal to 1"),
        ({"restart_attempts": -2}, "workers.restart_attempts"),
        ({"counts": 2}, "workers.counts: unknown key"),
    ],
)
def test_workers_section_errors_name_their_place(workers: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"sources": [{"uri": "a.mp4"}], "workers": workers})


def test_workers_section_forms() -> None:
    assert parse_config({"sources": [{"uri": "a.mp4"}], "workers": 3}).workers.count == 3
    section = parse_config({"sources": [{"uri": "a.mp4"}], "workers": {"gpus": "0, 2"}}).workers
    assert section.gpus == [0, 2] and section.count is None
    assert parse_config({"sources": [{"uri": "a.mp4"}]}).workers.count is None


def test_workers_sharing_a_gpu_without_mps_get_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from panoptes.workers.gpus import shared_gpu_note

    monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))  # no daemon's pipe there
    note = shared_gpu_note([0, 0, 1, 0], config_gpu=False)
    assert note is not None and note.startswith("note: 3 workers share GPU 0 and no MPS daemon")
    assert "nvidia-cuda-mps-control -d" in note
    assert shared_gpu_note([0, 1], config_gpu=False) is None  # one worker per GPU
    # Workers on the config's devices share its GPU only when it names one.
    assert "the config's GPU" in (shared_gpu_note([None, None], config_gpu=True) or "")
    assert shared_gpu_note([None, None], config_gpu=False) is None
    # A daemon listening (its control pipe in the folder), or fake GPUs: nothing to say.
    (tmp_path / "control").touch()
    assert shared_gpu_note([0, 0], config_gpu=False) is None
    (tmp_path / "control").unlink()
    monkeypatch.setenv(FAKE_GPUS_ENV, "2")
    assert shared_gpu_note([0, 0], config_gpu=False) is None
