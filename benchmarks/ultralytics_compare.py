"""Ultralytics' own multi-stream predict against panoptes: the same model, streams and GPU.

For each clip (the shared Retail02 1080p30 HEVC clip and its H.264 re-encode, as
``gpu_pipeline.py`` uses them) and each stream count N, measured in one run:

(a) Ultralytics: ``YOLO(model).predict(source="N.streams", stream=True, quantize=16, device=0,
    imgsz=416, rect=False)``, its multi-stream loader (``LoadStreams``: one OpenCV capture and
    one reading thread per stream, batching one frame of every stream). Frames/s are the
    predictor's results per second over the measuring window. Its loader keeps only the newest
    frame of each stream, so it decodes more than it predicts: the frames decoded (the captures'
    positions) are counted over the same window, and the share skipped is reported;
(b) panoptes end to end on the same model, exported to ONNX by Ultralytics, through
    ``gpu_pipeline.end_to_end`` (NVDEC, the mux letterboxing to 416×416, ``backend: torch`` in
    fp16, no tracker, a fakesink) in one process, and over ``--processes`` K processes;
(c) the ratios of (b) to (a).

The model is YOLOv8n built from Ultralytics' ``yolov8n.yaml`` (80 classes) with seeded random
weights, saved once as a checkpoint that both sides load: Ultralytics predicts with the
checkpoint and exports it to ONNX for panoptes. Random weights find next to nothing, on both
sides alike. Both sides letterbox to the same square 416×416 input: Ultralytics' default
``rect=True`` would shrink 1080p frames to 416×256 and panoptes' mux to 416×416, unequal work.

Ultralytics reads a file only once, while the streams must outlast its warm-up and window: each
clip is remuxed (no re-encoding) into ``--loop-repeats`` copies end to end, and both sides read
that file.

Each figure is counted over ``--measure-s`` seconds after ``--warmup-s`` seconds of warm-up.
Ultralytics runs in a process of its own, so that its reading threads and CUDA context are gone
before panoptes starts.

On a GPU machine: ``python benchmarks/ultralytics_compare.py``. A smoke check on a CPU (software
decoding, both models on torch's CPU device in fp32, two streams, short windows):
``python benchmarks/ultralytics_compare.py --device cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_pipeline import (
    HEVC_CLIP,
    NETWORK_WH,
    REPO,
    UsageSampler,
    end_to_end,
    end_to_end_processes,
    environment,
    h264_clip,
)

MODEL_YAML = "yolov8n.yaml"
WEIGHTS_SEED = 0
IMAGE_SIZE = NETWORK_WH[0]
#: onnx2torch 1.5 converts Split and Resize only as opset 13 defines them (18 changed both).
ONNX_OPSET = 17
#: Ultralytics stays quiet, offline (no settings sync, no events sent, no downloads), and keeps
#: its settings file out of the user's home.
ULTRALYTICS_ENV = {"YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}


def looped_clip(source: Path, repeats: int, work_dir: Path) -> Path:
    """``source``'s video stream ``repeats`` times end to end (packets copied, timestamps
    shifted), made once and kept in ``work_dir``."""
    import av

    destination = work_dir / f"{source.stem}_x{repeats}.mp4"
    if destination.is_file():
        return destination
    work_dir.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial.mp4")
    with av.open(str(source)) as input_container, av.open(str(partial), "w") as output:
        input_stream = input_container.streams.video[0]
        time_base = input_stream.time_base
        assert time_base is not None
        stream = output.add_stream_from_template(input_stream)
        # The demuxer's last packet is an empty flush marker, with no timestamps.
        packets = [p for p in input_container.demux(input_stream) if p.pts is not None]
        if not packets:
            raise ValueError(f"{source}: no video packets to loop")
        stamps = [(p.pts or 0, p.dts if p.dts is not None else p.pts or 0) for p in packets]
        frame_ticks = max(1, round(1 / ((input_stream.average_rate or 30) * time_base)))
        ends = [
            pts + (p.duration or frame_ticks) for p, (pts, _) in zip(packets, stamps, strict=True)
        ]
        span = max(ends) - min(pts for pts, _ in stamps)
        for repeat in range(repeats):
            for packet, (pts, dts) in zip(packets, stamps, strict=True):
                # Muxing rescales a packet's timestamps in place: set them afresh each time.
                packet.time_base = time_base
                packet.pts, packet.dts = pts + repeat * span, dts + repeat * span
                packet.stream = stream
                output.mux(packet)
    partial.rename(destination)
    return destination


def run_ultralytics(role_args: list[str], timeout_s: float) -> dict[str, Any]:
    """One Ultralytics step in a process of its own; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="ultralytics-") as folder:
        result = Path(folder) / "result.json"
        environ = {**os.environ, **ULTRALYTICS_ENV, "YOLO_CONFIG_DIR": folder}
        command = [sys.executable, str(Path(__file__).resolve()), *role_args]
        completed = subprocess.run(
            [*command, "--result", str(result)],
            env=environ,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if completed.returncode != 0 or not result.is_file():
            tail = (completed.stdout + completed.stderr)[-3000:]
            raise RuntimeError(f"ultralytics {role_args[:2]} exited {completed.returncode}: {tail}")
        loaded: dict[str, Any] = json.loads(result.read_text())
        return loaded


def inline_shared_initializers(path: Path) -> int:
    """Rewrites the ONNX file at ``path`` so that every Identity node fed by an initializer
    becomes a copy of that initializer under the node's output name; returns how many.

    PyTorch's TorchScript exporter stores equal weights once and feeds the other users through
    Identity nodes. Random weights have many equal ones (every bias is zero after BatchNorm is
    fused), and onnx2torch, which panoptes' torch backend converts with, needs a Conv's bias to be
    an initializer itself. The computation is unchanged.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {initializer.name: initializer for initializer in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            kept.append(node)
    inlined = len(graph.node) - len(kept)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, str(path))
    return inlined


def build_model(folder: Path) -> dict[str, Any]:
    """The model both sides run: YOLOv8n from its YAML with seeded random weights, saved as a
    checkpoint (``model.pt``, Ultralytics stores it in fp16), and that checkpoint exported to
    ONNX at 416×416, batch 1, fp32 (``model.onnx``, the Ultralytics layout with its metadata)."""
    import torch
    import ultralytics
    from ultralytics import YOLO

    torch.manual_seed(WEIGHTS_SEED)
    YOLO(MODEL_YAML).save(folder / "model.pt")
    model = YOLO(folder / "model.pt")
    exported = model.export(
        format="onnx",
        imgsz=IMAGE_SIZE,
        batch=1,
        dynamic=False,
        simplify=False,
        opset=ONNX_OPSET,
        device="cpu",
    )
    inlined = inline_shared_initializers(Path(exported))
    return {
        "checkpoint": str(folder / "model.pt"),
        "onnx": str(Path(exported).resolve()),
        "onnx_identity_initializers_inlined": inlined,
        "parameters": sum(p.numel() for p in model.model.parameters()),
        "classes": len(model.names),
        "ultralytics": ultralytics.__version__,
    }


def predict_streams(args: argparse.Namespace) -> dict[str, Any]:
    """(a): Ultralytics' multi-stream predict over ``args.streams[0]`` copies of
    ``args.worker_clip``, counted in whole batches over the measuring window."""
    import cv2
    import torch
    from ultralytics import YOLO

    streams = args.streams[0]
    listing = Path.cwd() / f"{streams}.streams"
    listing.write_text(f"{args.worker_clip}\n" * streams)
    on_gpu = args.device == "cuda"
    model = YOLO(args.worker_model)
    started = time.monotonic()
    results = model.predict(
        source=str(listing),
        stream=True,
        device=0 if on_gpu else "cpu",
        quantize=16 if on_gpu else None,
        imgsz=IMAGE_SIZE,
        rect=False,
        verbose=False,
    )

    def decoded() -> int:
        """Frames the loader's captures have read so far (one position per stream)."""
        captures = model.predictor.dataset.caps
        return sum(int(capture.get(cv2.CAP_PROP_POS_FRAMES)) for capture in captures)

    predicted = objects = 0
    first_batch_s = None
    warm_until = window_start = 0.0
    start_predicted = start_decoded = 0
    stage_ms = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    sampler = UsageSampler()
    try:
        for result in results:
            predicted += 1
            if window_start:
                objects += len(result)
            if predicted % streams:
                continue  # inside a batch: its results come out together
            now = time.monotonic()
            if first_batch_s is None:
                first_batch_s = now - started
                warm_until = now + args.warmup_s
            elif not window_start and now >= warm_until:
                start_predicted, start_decoded, window_start = predicted, decoded(), now
                sampler.start()
            elif window_start:
                # result.speed: this batch's ms per image in each of the predictor's stages.
                for stage in stage_ms:
                    stage_ms[stage] += result.speed[stage] * streams
                if now - window_start >= args.measure_s:
                    break
        else:
            raise RuntimeError(
                f"the streams ended after {predicted} frames, before the measuring window did: "
                "raise --loop-repeats"
            )
        elapsed = now - window_start  # to the end of the last batch counted
        frames = predicted - start_predicted
        frames_decoded = decoded() - start_decoded
        usage = sampler.stop()
        predictor = model.predictor
        assert predictor is not None
        network = predictor.imgsz
        half = bool(predictor.model.fp16)
    finally:
        results.close()  # stops the loader's threads and releases its captures
    return {
        "fps": frames / elapsed,
        "frames": frames,
        "objects_per_frame": round(objects / max(1, frames), 2),
        "decoded_fps": frames_decoded / elapsed,
        "skipped_share": round(1 - frames / frames_decoded, 3) if frames_decoded else None,
        "batch_size": streams,
        "network_hw": list(network),
        "fp16": half,
        "first_batch_s": round(first_batch_s or 0.0, 2),
        # The predictor's own timers (it synchronises the GPU around each stage): where a
        # frame's time goes in its single loop.
        "stage_ms_per_frame": {
            stage: round(total / max(1, frames), 3) for stage, total in stage_ms.items()
        },
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        **usage,
    }


def worker_main(args: argparse.Namespace) -> int:
    import ultralytics

    if args.build_model:
        result = build_model(Path(args.build_model))
    else:
        result = {**predict_streams(args), "ultralytics": ultralytics.__version__}
    Path(args.result).write_text(json.dumps(result))
    return 0


def measure(
    clip_name: str, clip: Path, streams: int, model: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    row: dict[str, Any] = {"clip": clip_name, "streams": streams}
    worker = [
        "--predict-streams",
        str(clip),
        "--model-checkpoint",
        model["checkpoint"],
        "--streams",
        str(streams),
        "--device",
        args.device,
        "--warmup-s",
        str(args.warmup_s),
        "--measure-s",
        str(args.measure_s),
    ]
    timeout_s = args.start_timeout_s + args.warmup_s + args.measure_s + 60
    try:
        row["ultralytics"] = run_ultralytics(worker, timeout_s)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        row["ultralytics_error"] = f"{type(error).__name__}: {error}"
    pipeline_args = argparse.Namespace(
        device=args.device,
        model=model["onnx"],
        batch_size=args.batch_size,
        tracker=args.tracker,
        warmup_s=args.warmup_s,
        measure_s=args.measure_s,
        start_timeout_s=args.start_timeout_s,
        processes=args.processes,
        switch_interval_ms=None,
        profile_s=0.0,
        out=args.out,
    )
    runs = {"panoptes_1": end_to_end, f"panoptes_{args.processes}": end_to_end_processes}
    for key, run in runs.items():
        try:
            row[key] = run(clip, streams, pipeline_args)
        except Exception as error:
            # Kept in the report beside the other side's figures, which stand on their own.
            row[f"{key}_error"] = f"{type(error).__name__}: {error}"
    ultralytics_fps = row.get("ultralytics", {}).get("fps")
    for key in runs:
        if key in row and ultralytics_fps:
            row[f"{key}_over_ultralytics"] = round(row[key]["fps"] / ultralytics_fps, 2)
    return row


def _fps_cell(row: dict[str, Any], key: str) -> str:
    return f"{row[key]['fps']:>7.0f}" if key in row else f"{'failed':>7}"


def _ratio_cell(row: dict[str, Any], key: str) -> str:
    value = row.get(f"{key}_over_ultralytics")
    return f"{value:>6.2f}" if value is not None else f"{'-':>6}"


def table(rows: list[dict[str, Any]], processes: int) -> str:
    many = f"panoptes_{processes}"
    header = (
        f"{'clip':<6} {'N':>4} {'ultra':>7} {'skip %':>6} {'gpu %':>5} "
        f"{'pan x1':>7} {'ratio':>6} {f'pan x{processes}':>7} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ultra = row.get("ultralytics", {})
        skipped, gpu = ultra.get("skipped_share"), ultra.get("gpu_util_percent_mean")
        lines.append(
            f"{row['clip']:<6} {row['streams']:>4} {_fps_cell(row, 'ultralytics')} "
            f"{'-' if skipped is None else round(100 * skipped):>6} "
            f"{'-' if gpu is None else round(gpu):>5} "
            f"{_fps_cell(row, 'panoptes_1')} {_ratio_cell(row, 'panoptes_1')} "
            f"{_fps_cell(row, many)} {_ratio_cell(row, many)}"
        )
    return "\n".join(lines)


def write_report(
    args: argparse.Namespace,
    clips: dict[str, Path],
    model: dict[str, Any],
    rows: list[dict[str, Any]],
    started: float,
) -> None:
    """The JSON report of the rows so far (written after each, so a cut run keeps them)."""
    smoke = args.device == "cpu"
    report = {
        "benchmark": "ultralytics_compare",
        "command": " ".join(["benchmarks/ultralytics_compare.py", *sys.argv[1:]]),
        "environment": {
            **environment(args),
            "ultralytics": model["ultralytics"],
            "opencv": next((r["ultralytics"]["opencv"] for r in rows if "ultralytics" in r), None),
        },
        "settings": {
            "model": f"{MODEL_YAML}, random weights (torch seed {WEIGHTS_SEED})",
            "model_files": {"checkpoint": model["checkpoint"], "onnx": model["onnx"]},
            "parameters": model["parameters"],
            "classes": model["classes"],
            "network_wh": NETWORK_WH,
            "precision": "fp32" if smoke else "fp16",
            "ultralytics_predict": {
                "stream": True,
                "imgsz": IMAGE_SIZE,
                "rect": False,
                "quantize": None if smoke else 16,
                "conf": 0.25,
                "loader": "LoadStreams (OpenCV, newest frame per stream)",
            },
            "panoptes": {
                "decoder": "cpu" if smoke else "nvdec",
                "backend": "torch",
                "batch_size": f"min(N, {args.batch_size})",
                "tracker": "bytetrack" if args.tracker else None,
                "processes": [1, args.processes],
            },
            "warmup_s": args.warmup_s,
            "measure_s": args.measure_s,
            "loop_repeats": args.loop_repeats,
            "clips": {name: str(path) for name, path in clips.items()},
        },
        "results": rows,
        "total_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--streams", type=int, nargs="+", help="default 32 64 (cpu: 2)")
    parser.add_argument("--clips", nargs="+", choices=["h264", "hevc"], default=["hevc", "h264"])
    parser.add_argument(
        "--processes", type=int, help="panoptes processes of the second run (default 4; cpu: 2)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="panoptes' largest batch")
    parser.add_argument("--tracker", action="store_true", help="add ByteTrack on panoptes' side")
    parser.add_argument("--warmup-s", type=float, help="default 3 (cpu: 1)")
    parser.add_argument("--measure-s", type=float, help="default 5 (cpu: 2)")
    parser.add_argument("--start-timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--loop-repeats", type=int, default=20, help="copies of each clip in the file read"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/panoptes-bench"))
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/ultralytics_compare.json"
    )
    parser.add_argument("--build-model", help=argparse.SUPPRESS)
    parser.add_argument("--predict-streams", dest="worker_clip", help=argparse.SUPPRESS)
    parser.add_argument("--model-checkpoint", dest="worker_model", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    smoke = args.device == "cpu"
    args.streams = args.streams or ([2] if smoke else [32, 64])
    args.processes = args.processes or (2 if smoke else 4)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (1.0 if smoke else 3.0)
    args.measure_s = args.measure_s if args.measure_s is not None else (2.0 if smoke else 5.0)
    if args.result:
        return worker_main(args)
    if smoke:
        import torch

        # The model on torch's CPU device shares the cores with the decoders.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))

    started = time.monotonic()
    clips: dict[str, Path] = {}
    for name in args.clips:
        source = HEVC_CLIP if name == "hevc" else h264_clip(HEVC_CLIP, args.work_dir)
        clips[name] = looped_clip(source, args.loop_repeats, args.work_dir)
    print(f"clips ready in {time.monotonic() - started:.1f} s: {clips}", flush=True)
    model_dir = args.work_dir / "ultralytics_model"
    model_dir.mkdir(parents=True, exist_ok=True)
    model = run_ultralytics(["--build-model", str(model_dir)], args.start_timeout_s)
    print(f"model ready: {model}", flush=True)
    rows: list[dict[str, Any]] = []
    for clip_name, clip in clips.items():
        for streams in args.streams:
            rows.append(measure(clip_name, clip, streams, model, args))
            print(json.dumps(rows[-1]), flush=True)
            write_report(args, clips, model, rows, started)
    print(f"wrote {args.out}")
    print(table(rows, args.processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
