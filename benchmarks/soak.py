"""Soak: N live cameras through the engine for a long time; memory and descriptors must stay flat.

Cameras are ``panoptes serve`` looping a 720p H.264 clip in a process of its own, read over
RTSP. The pipeline runs the detector and the tracker into a tiler, the osd and the RTSP server
(with no client, as an unwatched output is the common case), and a jsonl sink writing to
/dev/null. Every ``--interval-s`` seconds the script records, per stream, the frame rate,
drops, reconnections and capture-to-output latency, and for the process its RSS, open file
descriptors and threads.

Flat means: the median RSS of the last fifth of the run is within ``--rss-tolerance`` (default
5 %) of the median RSS of the second fifth (the first fifth is warm-up: model arenas and
encoder buffers grow to their working size), and the open file descriptors at the end are no
more than at the end of warm-up. The summary says whether both held.

Run: ``.venv/bin/python benchmarks/soak.py --streams 4 --duration-s 1800``; writes
``benchmarks/results/soak.json`` (rewritten at each sample, so a run cut short keeps its data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from _live import MODELS, REPO, camera_clip, machine, process_readings, served_cameras
from panoptes import Pipeline


def soak(args: argparse.Namespace) -> dict[str, Any]:
    clip = camera_clip(fps=args.fps)
    results: dict[str, Any] = {
        "benchmark": "soak",
        "machine": machine(),
        "streams": args.streams,
        "camera": f"{clip.name}: 1280x720, {args.fps} FPS H.264 over RTSP/TCP",
        "duration_s": args.duration_s,
        "interval_s": args.interval_s,
        "samples": [],
    }
    with served_cameras(clip, args.streams) as urls:
        config: dict[str, Any] = {
            "sources": [{"uri": url, "name": f"cam{i}"} for i, url in enumerate(urls)],
            "tracker": {"type": "bytetrack"},
            "tiler": {"width": 1280, "height": 720},
            "osd": {},
            "sinks": [{"type": "rtsp", "port": 0}, {"type": "jsonl", "path": os.devnull}],
            "perf": {"interval_s": 0},
            "keep_alive": True,
        }
        if args.model:
            config["infer"] = [{"model": args.model}]
        pipeline = Pipeline(config)
        pipeline.start()
        began = time.monotonic()
        last: dict[str, int] = {}
        last_time = began
        try:
            while time.monotonic() - began < args.duration_s:
                time.sleep(args.interval_s)
                now = time.monotonic()
                span = now - last_time
                streams = {}
                for stream in pipeline.streams():
                    stats = stream.stats
                    latencies = sorted(stats.latency_s)
                    streams[stream.name] = {
                        "state": stream.state.value,
                        "fps": (stats.frames_out - last.get(stream.name, 0)) / span,
                        "frames": stats.frames_out,
                        "dropped": stats.dropped,
                        "reconnects": stats.reconnects,
                        "latency_ms_p50": 1000 * latencies[len(latencies) // 2]
                        if latencies
                        else None,
                    }
                    last[stream.name] = stats.frames_out
                last_time = now
                sample = {"t_s": round(now - began, 1), **process_readings(), "streams": streams}
                results["samples"].append(sample)
                fps = [s["fps"] for s in streams.values()]
                print(
                    f"{sample['t_s']:7.0f} s  rss {sample['rss_mib']:7.1f} MiB  "
                    f"fds {sample['open_fds']:4.0f}  fps {statistics.median(fps or [0]):5.1f}",
                    flush=True,
                )
                results["summary"] = summarise(results["samples"], args.rss_tolerance)
                write(results, args.output)
        finally:
            pipeline.stop()
            pipeline.wait(30)
    results["errors"] = [str(m) for m in pipeline.bus.errors()]
    write(results, args.output)
    return results


def summarise(samples: list[dict[str, Any]], rss_tolerance: float) -> dict[str, Any]:
    fifth = max(1, len(samples) // 5)
    settled = samples[fifth : 2 * fifth] or samples[:1]
    final = samples[-fifth:]
    rss_settled = statistics.median(s["rss_mib"] for s in settled)
    rss_final = statistics.median(s["rss_mib"] for s in final)
    fds_settled = settled[-1]["open_fds"]
    fds_final = samples[-1]["open_fds"]
    fps = [st["fps"] for s in samples[fifth:] for st in s["streams"].values()]
    return {
        "samples": len(samples),
        "rss_mib_settled": rss_settled,
        "rss_mib_final": rss_final,
        "rss_growth": rss_final / rss_settled - 1,
        "rss_flat": rss_final <= rss_settled * (1 + rss_tolerance),
        "open_fds_settled": fds_settled,
        "open_fds_final": fds_final,
        "fds_flat": fds_final <= fds_settled,
        "median_stream_fps": statistics.median(fps) if fps else 0.0,
        "reconnects": sum(st["reconnects"] for st in samples[-1]["streams"].values()),
        "dropped": sum(st["dropped"] for st in samples[-1]["streams"].values()),
    }


def write(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--duration-s", type=float, default=1800.0)
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--fps", type=int, default=15, help="camera frame rate")
    parser.add_argument("--model", default="yolox-nano", help="detector; '' for none")
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "soak.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))
    results = soak(args)
    print(json.dumps(results.get("summary", {}), indent=2))


if __name__ == "__main__":
    main()
