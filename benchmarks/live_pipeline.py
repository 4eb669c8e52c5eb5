"""Live cameras through the engine: glass-to-glass latency, and how many cameras one machine holds.

Cameras are ``panoptes serve`` looping a 720p15 H.264 clip (the shared Retail02 footage,
transcoded once into ``out/bench``) in a process of its own, read over RTSP/TCP.

Measured in one run:
- latency: 4 live 720p streams through yolox-nano and the tracker, each served again by the
  engine's RTSP server (one path per stream, one ``ffmpeg -c copy`` client each). A frame's
  latency runs from its capture (the moment its source decoded it off the network) to the moment
  the last RTP packet of it left for a client; p50 and p95 over the run, warm-up excluded;
- capacity: for N = 1, 2, ... live 720p15 streams through yolox-nano and the tracker into a
  fakesink, the frame rate per stream and the frames dropped because the pipeline was behind;
  N is held when every stream keeps >= 95 % of 15 FPS and drops <= 1 % of its frames. The sweep
  stops at the first N not held.

Run: ``.venv/bin/python benchmarks/live_pipeline.py``; writes
``benchmarks/results/live_pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from _live import MODELS, REPO, camera_clip, machine, served_cameras
from panoptes import Pipeline

CAMERA_FPS = 15


def live_config(urls: list[str], sinks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sources": [
            {"uri": url, "name": f"cam{index}", "open_timeout_s": 20}
            for index, url in enumerate(urls)
        ],
        "infer": [{"model": "yolox-nano"}],
        "tracker": {"type": "bytetrack"},
        "sinks": sinks,
        "perf": {"interval_s": 0},
        "keep_alive": True,
    }


def latency_run(clip: Path, streams: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    with served_cameras(clip, streams) as urls:
        pipeline = Pipeline(live_config(urls, [{"type": "rtsp", "port": 0, "path": "/out/{name}"}]))
        pipeline.build()
        sink = pipeline.element("rtsp0")
        pipeline.start()
        clients: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + 30
            while len(sink.paths) < streams and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.2)
            for source_id in sorted(sink.paths):  # type: ignore[attr-defined]
                url = sink.url(source_id)  # type: ignore[attr-defined]
                clients.append(
                    subprocess.Popen(
                        [
                            "ffmpeg",
                            "-v",
                            "error",
                            "-rtsp_transport",
                            "tcp",
                            "-i",
                            url,
                            "-c",
                            "copy",
                            "-f",
                            "null",
                            "-",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(warmup_s)
            sink.latencies_s.clear()  # type: ignore[attr-defined]
            sent_before = sink.frames_sent  # type: ignore[attr-defined]
            time.sleep(duration_s)
            latencies = np.array(list(sink.latencies_s))  # type: ignore[attr-defined]
            sent = sink.frames_sent - sent_before  # type: ignore[attr-defined]
            streams_now = pipeline.streams()
        finally:
            for client in clients:
                client.terminate()
                client.wait()
            pipeline.stop()
            pipeline.wait(30)
    return {
        "streams": streams,
        "duration_s": duration_s,
        "frames_sent": sent,
        "latency_ms_p50": 1000 * float(np.percentile(latencies, 50)),
        "latency_ms_p95": 1000 * float(np.percentile(latencies, 95)),
        "latency_ms_max": 1000 * float(latencies.max()),
        "dropped": {s.name: s.stats.dropped for s in streams_now},
        "errors": [str(m) for m in pipeline.bus.errors()],
    }


def capacity_run(clip: Path, streams: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    with served_cameras(clip, streams) as urls:
        pipeline = Pipeline(live_config(urls, [{"type": "fakesink"}]))
        pipeline.build()
        pipeline.start()
        try:
            time.sleep(warmup_s)
            before = {s.name: (s.stats.frames_out, s.stats.dropped) for s in pipeline.streams()}
            time.sleep(duration_s)
            after = {s.name: (s.stats.frames_out, s.stats.dropped) for s in pipeline.streams()}
        finally:
            pipeline.stop()
            pipeline.wait(30)
    per_stream = {}
    for name, (frames, dropped) in after.items():
        frames_before, dropped_before = before.get(name, (0, 0))
        out = frames - frames_before
        lost = dropped - dropped_before
        per_stream[name] = {
            "fps": out / duration_s,
            "dropped": lost,
            "drop_share": lost / max(1, out + lost),
        }
    held = len(per_stream) == streams and all(
        s["fps"] >= 0.95 * CAMERA_FPS and s["drop_share"] <= 0.01 for s in per_stream.values()
    )
    return {
        "streams": streams,
        "held": held,
        "min_fps": min((s["fps"] for s in per_stream.values()), default=0.0),
        "median_fps": statistics.median(s["fps"] for s in per_stream.values())
        if per_stream
        else 0.0,
        "per_stream": per_stream,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-streams", type=int, default=4)
    parser.add_argument("--duration-s", type=float, default=30.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=8.0, help="seconds before measuring")
    parser.add_argument("--max-streams", type=int, default=12, help="capacity sweep limit")
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "live_pipeline.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))
    clip = camera_clip(fps=CAMERA_FPS)
    results: dict[str, Any] = {
        "benchmark": "live_pipeline",
        "machine": machine(),
        "camera": f"{clip.name}: 1280x720, {CAMERA_FPS} FPS H.264 over RTSP/TCP",
        "model": "yolox-nano (onnxruntime, CPU) + bytetrack",
    }
    print(f"latency, {args.latency_streams} streams ...", flush=True)
    results["latency"] = latency_run(clip, args.latency_streams, args.duration_s, args.warmup_s)
    sweep = []
    for streams in range(1, args.max_streams + 1):
        print(f"capacity, {streams} stream(s) ...", flush=True)
        run = capacity_run(clip, streams, args.duration_s, args.warmup_s)
        sweep.append(run)
        print(f"  min fps {run['min_fps']:.1f}, held: {run['held']}", flush=True)
        if not run["held"]:
            break
    results["capacity"] = {
        "sweep": sweep,
        "streams_held": max((run["streams"] for run in sweep if run["held"]), default=0),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
