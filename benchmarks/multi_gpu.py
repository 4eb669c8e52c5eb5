"""Multi-GPU benchmark: throughput and scaling on 1, 2 and 4 GPUs, a worker process on each.

The GPU benchmark's streams and model on several GPUs at once, one worker process per GPU
(``panoptes run --gpus``), each GPU given the same streams.

The pipeline is ``benchmarks/gpu_pipeline.py``'s end to end: looping 1080p30 Retail02 streams
(the H.264 re-encode, or the HEVC original) decoded by NVDEC, the mux letterboxing to 416x416,
yolox-nano on ``backend: torch`` (fp16, a fixed batch of ``min(streams per GPU, --batch-size)``),
ByteTrack and a fakesink. For each GPU count k the supervisor starts k workers of
``--streams-per-gpu`` streams each, waits for every stream's first frame and ``--warmup-s``
seconds, then counts the frames that leave the tracker over ``--measure-s`` seconds, each
worker by its own clock. Reported per k: the throughput (frames/s of all workers), the streams
held in real time (throughput / 30), each GPU's utilisation (nvidia-smi, sampled), and the
scaling efficiency: throughput on k GPUs over k times the throughput on one (target >= 0.9).

On a machine of several GPUs: ``python benchmarks/multi_gpu.py --gpus 1 2 4``; counts above the
GPUs found are skipped. Without one, ``--dry-run`` checks the harness end to end: GPUs faked
(``PANOPTES_FAKE_GPUS``), software decoding, the model on torch's CPU device, one stream per
GPU, short windows; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gpu_pipeline import CLIP_FPS, HEVC_CLIP, NETWORK_WH, environment, h264_clip
from panoptes.config.loader import parse_config
from panoptes.workers import FAKE_GPUS_ENV, Supervisor, discover_gpus
from workers import supervisor_fps

REPO = Path(__file__).resolve().parents[1]


def pipeline_config(clip: Path, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    """``streams`` streams of ``clip`` as gpu_pipeline's end-to-end pipeline runs them, with
    the batch of one worker's share (``--streams-per-gpu``)."""
    on_gpu = args.device == "cuda"
    batch = min(args.streams_per_gpu, args.batch_size)
    return {
        "sources": [
            {"uri": str(clip), "decoder": "nvdec" if on_gpu else "cpu", "loop": True}
            for _ in range(streams)
        ],
        "mux": {"width": NETWORK_WH[0], "height": NETWORK_WH[1], "batch_size": batch},
        "infer": [
            {
                "model": "yolox-nano",
                "backend": "torch",
                "device": args.device,
                "precision": "fp16" if on_gpu else "fp32",
                "batch_size": batch,
            }
        ],
        "tracker": {"type": "bytetrack"},
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
    }


class GpuSampler:
    """Every GPU's utilisation from nvidia-smi, sampled every ``period_s`` in a thread."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.samples: dict[int, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)

    def _run(self) -> None:
        command = [
            "nvidia-smi",
            "--query-gpu=index,utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
        while not self._stop.wait(self.period_s):
            try:
                output = subprocess.run(
                    command, capture_output=True, text=True, timeout=10, check=True
                ).stdout
            except (OSError, subprocess.SubprocessError):
                return  # no nvidia-smi (a dry run): nothing to sample
            for line in output.strip().splitlines():
                index, percent = (part.strip() for part in line.split(","))
                self.samples.setdefault(int(index), []).append(float(percent))

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def means(self, gpus: list[int]) -> dict[str, float | None]:
        return {
            str(gpu): round(sum(v) / len(v), 1) if (v := self.samples.get(gpu)) else None
            for gpu in gpus
        }


def measure(clip: Path, gpu_count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of ``gpu_count`` GPUs, ``--workers-per-gpu`` workers on each."""
    gpus = list(range(gpu_count))
    layout: list[int | None] = [
        gpu for _ in range(args.workers_per_gpu) for gpu in gpus
    ]  # round robin, as --workers with --gpus deals them
    streams = args.streams_per_gpu * gpu_count
    config = parse_config(pipeline_config(clip, streams, args))
    supervisor = Supervisor(config, gpus=layout, base_dir=REPO)
    began = time.monotonic()
    supervisor.build()
    supervisor.start()
    try:
        deadline = time.monotonic() + args.start_timeout_s
        while not all(row.frames_out > 0 for row in supervisor.rows()):
            if supervisor.finished or time.monotonic() > deadline:
                raise RuntimeError(f"not every stream started within {args.start_timeout_s:g} s")
            time.sleep(0.1)
        first_frames_s = time.monotonic() - began
        time.sleep(args.warmup_s)
        with GpuSampler() as sampler:
            fps, frames, window_s = supervisor_fps(supervisor, args.measure_s)
        workers = supervisor.workers()
    finally:
        supervisor.stop()
        supervisor.wait(120)
        supervisor.close()
    errors = [str(message) for message in supervisor.bus.errors()]
    return {
        "gpus": gpu_count,
        "workers": len(layout),
        "streams": streams,
        "fps": fps,
        "frames": frames,
        "window_s": round(window_s, 2),
        "streams_real_time": round(fps / CLIP_FPS, 1),
        "first_frames_s": round(first_frames_s, 1),
        "gpu_util_percent_mean": sampler.means(gpus),
        "worker_fps": [
            round(info.frames_out / info.elapsed_s, 1) for info in workers if info.elapsed_s
        ],
        "worker_memory_mb": [
            round(info.memory_bytes / 2**20) for info in workers if info.memory_bytes is not None
        ],
        "errors": errors[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4], help="GPU counts")
    parser.add_argument("--streams-per-gpu", type=int, default=64, help="default 64")
    parser.add_argument(
        "--workers-per-gpu",
        type=int,
        default=1,
        help="worker processes on each GPU (several share its streams), default 1",
    )
    parser.add_argument("--clip", choices=["h264", "hevc"], default="h264")
    parser.add_argument("--batch-size", type=int, default=64, help="largest model batch")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--measure-s", type=float, default=15.0)
    parser.add_argument("--start-timeout-s", type=float, default=300.0)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/panoptes-bench"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/multi_gpu.json")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU: faked GPUs, CPU decoding and model, 1 stream per GPU, short windows",
    )
    args = parser.parse_args(argv)
    # The shared models stand in for the zoo's downloads.
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(HEVC_CLIP.parents[1] / "models"))
    args.device = "cuda"
    if args.dry_run:
        os.environ[FAKE_GPUS_ENV] = str(max(args.gpus))
        args.device, args.clip = "cpu", "hevc"
        args.streams_per_gpu, args.warmup_s, args.measure_s = 1, 1.0, 3.0
        if args.out == parser.get_default("out"):
            args.out = args.work_dir / "multi_gpu_dry_run.json"
    found = len(discover_gpus())
    counts = [count for count in args.gpus if count <= found]
    skipped = [count for count in args.gpus if count > found]
    if skipped:
        print(f"skipping {skipped} GPU(s): {found} found", flush=True)
    if not counts:
        print("no GPU count to measure", file=sys.stderr)
        return 1
    clip = HEVC_CLIP if args.clip == "hevc" else h264_clip(HEVC_CLIP, args.work_dir)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    for count in sorted(counts):
        row = measure(clip, count, args)
        base = next((r["fps"] for r in rows if r["gpus"] == 1), None)
        row["scaling_efficiency"] = round(row["fps"] / (count * base), 3) if base else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "benchmark": "multi_gpu",
        "command": " ".join(["benchmarks/multi_gpu.py", *sys.argv[1:]]),
        "dry_run": args.dry_run,
        "environment": {**environment(args), "gpus_found": found},
        "settings": {
            "clip": str(clip),
            "clip_fps": CLIP_FPS,
            "network_wh": NETWORK_WH,
            "model": "yolox-nano",
            "backend": "torch",
            "precision": "fp16" if args.device == "cuda" else "fp32",
            "tracker": "bytetrack",
            "streams_per_gpu": args.streams_per_gpu,
            "workers_per_gpu": args.workers_per_gpu,
            "warmup_s": args.warmup_s,
            "measure_s": args.measure_s,
            "skipped_gpu_counts": skipped,
        },
        "results": rows,
        "total_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'gpus':>4} {'streams':>7} {'fps':>8} {'30fps strm':>10} {'efficiency':>10}")
    for row in rows:
        efficiency = (
            "-" if row["scaling_efficiency"] is None else f"{row['scaling_efficiency']:.2f}"
        )
        print(
            f"{row['gpus']:>4} {row['streams']:>7} {row['fps']:>8.1f} "
            f"{row['streams_real_time']:>10.1f} {efficiency:>10}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
