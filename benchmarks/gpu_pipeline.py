"""GPU pipeline benchmark: N camera streams decoded by NVDEC, batched, detected and tracked on
one GPU, against the decoders' own ceiling measured in the same run.

For each clip (the shared Retail02 1080p30 HEVC clip, and the same re-encoded to H.264 with
PyAV's libx264, veryfast, crf 26, cached in ``--work-dir``) and each stream count N, every stream
a looping file read as fast as it goes:

(a) decode-only ceiling: N decoder sessions fed from memory, total frames/s: the clip's
    packets demuxed once, as panoptes gives them to NVDEC (Annex B), each session's decoder kept
    from pass to pass and its pictures left where they are, so that the decoders bind and not
    the demuxing or Python around them; with ``--processes K`` the N sessions are shared out
    over K processes as the pipeline's streams are, and the ceiling is measured in every round
    beside the pipeline. Also, in one process's threads: panoptes' NVDEC reader
    (``open_reader(..., decoder="nvdec").frames()``: demuxing in PyAV, each picture copied out
    of the decoder) and PyNvVideoCodec's own demuxer and decoder (``CreateDemuxer`` +
    ``CreateDecoder``), which binds well below the decoders (its demuxing and start-up);
(b) panoptes end to end: a Pipeline of N ``decoder: nvdec`` sources, the mux letterboxing to
    416×416, yolox-nano on ``backend: torch`` (fp16, a fixed batch of ``min(N, --batch-size)``,
    CUDA graphs), ByteTrack and a fakesink; frames/s counted after the tracker;
(c) during (b): GPU utilisation (NVML, sampled) and CPU use (the process's CPU seconds per
    second, in cores, and the machine's busy share);
(d) the ratio of (b) to the ceiling (a), and the streams held in real time (fps / 30).

With ``--processes K`` (b) runs as K pipeline processes on the one GPU, the N streams shared out
evenly, as ``panoptes run --workers K`` runs them: each process loads its model, the parent
starts their measuring windows together once all are running, and their frames/s are added up.
One process is bound by Python's global interpreter lock long before the GPU is busy; several
use the machine's other cores. With ``--mps`` every process is a client of an MPS daemon the run
starts for itself: without it the processes' kernels take turns on the GPU. ``--cuda-wait`` sets
how threads wait for the GPU (``PANOPTES_CUDA_WAIT``; panoptes blocks, CUDA's default spins).

Each figure is counted over ``--measure-s`` seconds after ``--warmup-s`` seconds of warm-up (the
pipeline's model loading and first batches excluded). ``--repeats R`` measures the ceiling and (b) R
times in turn, and reports the medians and
the median of each neighbouring pair's ratio: single runs on a shared machine vary by a quarter.

On a GPU machine: ``python benchmarks/gpu_pipeline.py --out results.json``. A smoke check on a
CPU (software decoding into numpy, the ceiling PyAV's decoders fed from memory, the model on
torch's CPU device, two streams): ``python benchmarks/gpu_pipeline.py --device cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from panoptes import Batch, Pipeline
from panoptes.core.gpu_wait import GPU_WAIT_MODES, gpu_wait_mode, set_gpu_wait
from panoptes.media._nvdec import NVDEC_CODECS, AnnexB
from panoptes.media.reader import Decoder, open_reader

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("PANOPTES_TEST_ASSETS") or REPO / ".." / "shared" / "assets").resolve()
HEVC_CLIP = ASSETS / "videos" / "Retail02_short.mp4"
CLIP_FPS = 30.0
NETWORK_WH = (416, 416)

Work = Callable[[threading.Event, list[int]], None]
"""One stream's loop for :func:`threaded_rate`: adds its frames to ``count[0]`` until stopped."""


def h264_clip(source: Path, work_dir: Path) -> Path:
    """``source`` re-encoded to H.264 (libx264, veryfast, crf 26) once, kept in ``work_dir``."""
    import av

    destination = work_dir / f"{source.stem}_h264_crf26.mp4"
    if destination.is_file():
        return destination
    work_dir.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial.mp4")
    with av.open(str(source)) as input_container, av.open(str(partial), "w") as output:
        input_stream = input_container.streams.video[0]
        rate = Fraction(input_stream.average_rate or int(CLIP_FPS))
        stream = output.add_stream("libx264", rate=rate)
        stream.width = input_stream.codec_context.width
        stream.height = input_stream.codec_context.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26"}
        for index, frame in enumerate(input_container.decode(input_stream)):
            picture = frame.reformat(format="yuv420p")
            picture.pts, picture.time_base = index, 1 / rate
            output.mux(stream.encode(picture))
        output.mux(stream.encode(None))
    partial.rename(destination)
    return destination


class Rate(NamedTuple):
    """What :func:`threaded_rate` counted."""

    fps: float
    """Items/s of all the threads together."""
    cpu_cores: float
    """The process's CPU seconds per second over the same window."""


def threaded_rate(streams: int, work: Work, args: argparse.Namespace) -> Rate:
    """Total items/s of ``streams`` threads running ``work(stop, count)``, which adds to
    ``count[0]`` until ``stop`` is set; counted over the measuring window only."""
    stop = threading.Event()
    counts = [[0] for _ in range(streams)]
    errors: list[BaseException] = []

    def guarded(count: list[int]) -> None:
        try:
            work(stop, count)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(c,), daemon=True) for c in counts]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup_s)
    start, began, cpu = sum(c[0] for c in counts), time.monotonic(), time.process_time()
    time.sleep(args.measure_s)
    elapsed = time.monotonic() - began
    rate = Rate(
        (sum(c[0] for c in counts) - start) / elapsed, (time.process_time() - cpu) / elapsed
    )
    stop.set()
    for thread in threads:
        thread.join(30)
    if errors:
        raise RuntimeError(f"{len(errors)} of {streams} decoders failed: {errors[0]!r}")
    return rate


def reader_work(clip: Path, decoder: Decoder) -> Work:
    def work(stop: threading.Event, count: list[int]) -> None:
        reader = open_reader(str(clip), decoder=decoder, loop=True)
        try:
            for _ in reader.frames(stop):
                count[0] += 1
        finally:
            reader.close()

    return work


class Packets(NamedTuple):
    """A clip's packets demuxed once, as a decoder is given them."""

    codec: str
    """FFmpeg's name of the codec: ``h264``, ``hevc``."""
    extradata: bytes | None
    """The codec's parameter sets as the container holds them (``avcC``, ``hvcC``)."""
    units: list[tuple[np.ndarray, int | None]]
    """The packets, each a buffer with its pts: as the container holds them, or as NVDEC is
    given them (Annex B, parameter sets in band)."""


def demux_once(clip: Path, *, annexb: bool) -> Packets:
    import av

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        filtered = AnnexB(stream) if annexb else None
        units = []
        for packet in container.demux(stream):
            if filtered is not None:
                parts = filtered.convert(packet if packet.size else None)
            else:
                parts = [(packet, packet.pts)] if packet.size else []
            units += [(np.frombuffer(bytes(data), np.uint8).copy(), pts) for data, pts in parts]
        context = stream.codec_context
        return Packets(context.name, context.extradata, units)


def nvdec_decode(nvc: Any, decoder: Any, data: np.ndarray, pts: int | None) -> list[Any]:
    """The pictures a PyNvVideoCodec ``decoder`` gives for the Annex B bytes ``data``."""
    packet = nvc.PacketData()
    packet.bsl_data, packet.bsl, packet.pts = data.ctypes.data, data.size, pts or 0
    return list(decoder.Decode(packet))


def memory_decode_work(
    clip: Path, device: str, take: Callable[[Any, Any], None] | None = None
) -> Work:
    """The decoders' ceiling: each stream a decoder of its own, kept from pass to pass, fed the
    clip's packets from memory over and over (demuxed here, once). On ``cuda`` NVDEC through
    PyNvVideoCodec, one ``Decode`` call per packet, each picture left where it is or, with
    ``take``, passed to ``take(picture, stream)`` with the thread's torch stream; on ``cpu``
    PyAV's software decoder."""
    packets = demux_once(clip, annexb=device == "cuda")
    if device != "cuda":
        import av

        def cpu_work(stop: threading.Event, count: list[int]) -> None:
            context = av.CodecContext.create(packets.codec, "r")
            assert isinstance(context, av.video.codeccontext.VideoCodecContext)
            context.extradata = packets.extradata
            while not stop.is_set():
                for data, pts in packets.units:
                    packet = av.Packet(data.tobytes())
                    packet.pts = pts
                    count[0] += len(context.decode(packet))
                    if stop.is_set():
                        return

        return cpu_work

    import PyNvVideoCodec as nvc
    import torch

    codec = getattr(nvc.cudaVideoCodec, NVDEC_CODECS[packets.codec])

    def nvdec_work(stop: threading.Event, count: list[int]) -> None:
        stream = None
        if take is not None:
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            torch.cuda.set_stream(stream)
        decoder = nvc.CreateDecoder(gpuid=0, codec=codec, usedevicememory=True)
        while not stop.is_set():
            for data, pts in packets.units:
                for frame in nvdec_decode(nvc, decoder, data, pts):
                    if take is not None:
                        take(frame, stream)
                    count[0] += 1
                if stop.is_set():
                    return

    return nvdec_work


def pynvvideocodec_work(clip: Path) -> Work:
    """PyNvVideoCodec's demuxer and decoder, the file reopened at its end (as GPU.md measured)."""
    import PyNvVideoCodec as nvc

    def work(stop: threading.Event, count: list[int]) -> None:
        while not stop.is_set():
            demuxer = nvc.CreateDemuxer(str(clip))
            decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True)
            for packet in demuxer:
                if stop.is_set():
                    return
                count[0] += len(decoder.Decode(packet))

    return work


class UsageSampler:
    """Samples GPU utilisation (NVML, else nvidia-smi) and the machine's CPU busy share every
    ``period_s`` between :meth:`start` and :meth:`stop`; the process's CPU seconds are read at
    both ends."""

    def __init__(self, period_s: float = 0.25) -> None:
        self.period_s = period_s
        self.gpu_percent: list[float] = []
        self.cpu_percent: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-sampler", daemon=True)
        self._process_s = 0.0
        self._wall_s = 0.0
        self.gpu_source = "none"

    def _gpu_reader(self) -> Callable[[], float] | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.gpu_source = "nvml"
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            pass
        try:
            subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        self.gpu_source = "nvidia-smi"

        def query() -> float:
            output = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            return float(output.split()[0])

        return query

    def _run(self) -> None:
        gpu = self._gpu_reader()
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is not None:
            psutil.cpu_percent(interval=None)
        while not self._stop.wait(self.period_s):
            if gpu is not None:
                self.gpu_percent.append(gpu())
            if psutil is not None:
                self.cpu_percent.append(float(psutil.cpu_percent(interval=None)))

    def start(self) -> None:
        times = os.times()
        self._process_s = times.user + times.system
        self._wall_s = time.monotonic()
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        times = os.times()
        cores = (times.user + times.system - self._process_s) / (time.monotonic() - self._wall_s)
        self._stop.set()
        self._thread.join(10)

        def mean(values: list[float]) -> float | None:
            return round(sum(values) / len(values), 1) if values else None

        return {
            "gpu_util_percent_mean": mean(self.gpu_percent),
            "gpu_util_percent_max": max(self.gpu_percent, default=None),
            "gpu_util_samples": len(self.gpu_percent),
            "gpu_util_source": self.gpu_source,
            "machine_cpu_percent_mean": mean(self.cpu_percent),
            "process_cpu_cores": round(cores, 2),
            "cpu_count": os.cpu_count(),
        }


@contextmanager
def running(pipeline: Pipeline) -> Iterator[Pipeline]:
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()
        pipeline.wait(60)


def end_to_end(
    clip: Path,
    streams: int,
    args: argparse.Namespace,
    ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """(b) and (c): the whole pipeline's frames/s after the tracker, and what it used.
    ``ready`` is called once the first batch is through, before the warm-up."""
    batch = min(streams, args.batch_size)
    on_gpu = args.device == "cuda"
    config = {
        "sources": [
            {"uri": str(clip), "decoder": "nvdec" if on_gpu else "cpu", "loop": True}
            for _ in range(streams)
        ],
        "mux": {"width": NETWORK_WH[0], "height": NETWORK_WH[1], "batch_size": batch},
        "infer": [
            {
                "model": args.model,
                "backend": "torch",
                "device": args.device,
                "precision": "fp16" if on_gpu else "fp32",
                "batch_size": batch,
                "compile": args.compile,
            }
        ],
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
    }
    if args.tracker:
        config["tracker"] = {"type": "bytetrack"}
    pipeline = Pipeline(config)
    counted = [0]
    objects = [0]

    def count(batch: Batch) -> None:
        counted[0] += len(batch.frames)
        objects[0] += sum(len(frame.objects) for frame in batch.frames)

    pipeline.add_probe("tracker" if args.tracker else "infer0", count)
    built = time.monotonic()
    with running(pipeline):
        while counted[0] == 0 and time.monotonic() - built < args.start_timeout_s:
            time.sleep(0.05)
        first_batch_s = time.monotonic() - built
        if ready is not None:
            ready()
        time.sleep(args.warmup_s)
        sampler = UsageSampler()
        start_frames, start_objects = counted[0], objects[0]
        busy_before = {stats.name: stats.busy_s for stats in pipeline.element_stats()}
        mux_before = pipeline.mux_busy_s
        sampler.start()
        name = f"{clip.stem}_{streams}" + ("_process0" if args.worker_clip else "")
        profiles = start_profiles(args, name) if args.profile_s > 0 else []
        began = time.monotonic()
        time.sleep(args.measure_s)
        frames = counted[0] - start_frames
        elapsed = time.monotonic() - began
        # The share of the measured time each stage's thread spent working: a stage near 1.0
        # is the one that binds.
        busy = {
            stats.name: round((stats.busy_s - busy_before.get(stats.name, 0.0)) / elapsed, 3)
            for stats in pipeline.element_stats()
        }
        busy["mux"] = round((pipeline.mux_busy_s - mux_before) / elapsed, 3)
        usage = sampler.stop()
        found = objects[0] - start_objects
        written = finish_profiles(profiles, args)
    return {
        "fps": frames / elapsed,
        "frames": frames,
        "objects_per_frame": round(found / max(1, frames), 2),
        "batch_size": batch,
        "first_batch_s": round(first_batch_s, 2),
        "conversions": [conversion.describe() for conversion in pipeline.conversions],
        "stages": [stats.name for stats in pipeline.element_stats()],
        "busy_share": busy,
        **usage,
        **({"profiles": written} if written else {}),
    }


PROFILES = {
    "threads": ["--threads", "--nonblocking"],
    "gil": ["--threads", "--gil", "--nonblocking"],
}
"""py-spy's recordings of the pipeline process: every thread at work; the thread holding the
GIL alone. (Native frames need py-spy to stop the process, which it cannot do from a child of
it: run ``py-spy record --native --idle --threads --pid PID`` on a worker from outside.)"""


def py_spy() -> str | None:
    """py-spy's executable: on PATH, or beside this Python's."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def start_profiles(
    args: argparse.Namespace, name: str
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """py-spy recording this process for ``--profile-s`` seconds (at most the measuring window),
    once for each of :data:`PROFILES`, all at once; collapsed stacks beside ``--out``."""
    spy = py_spy()
    assert spy is not None  # main checked
    duration = max(1, int(min(args.profile_s, args.measure_s)))
    started = []
    for kind, extra in PROFILES.items():
        path = args.out.parent / f"profile_{name}_{kind}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [spy, "record", "--pid", str(os.getpid()), "--rate", "100"]
        command += ["--duration", str(duration), "--format", "raw", "-o", str(path), *extra]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append((process, path))
    return started


def finish_profiles(
    started: list[tuple[subprocess.Popen[bytes], Path]], args: argparse.Namespace
) -> list[str]:
    """The names of the recordings :func:`start_profiles` wrote, once py-spy has finished."""
    written = []
    for process, path in started:
        try:
            process.wait(args.profile_s + 60)
        except subprocess.TimeoutExpired:
            process.kill()
        if path.exists():
            written.append(path.name)
    return written


def run_processes(
    clip: Path, streams: int, args: argparse.Namespace, *extra: str
) -> list[dict[str, Any]]:
    """The figures of ``args.processes`` worker processes sharing ``streams`` out evenly, each
    told to start once all have said they are ready (so that their windows coincide)."""
    processes = min(args.processes, streams)
    shares = [
        streams // processes + (1 if i < streams % processes else 0) for i in range(processes)
    ]
    common = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker-clip",
        str(clip),
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--warmup-s",
        str(args.warmup_s),
        "--measure-s",
        str(args.measure_s),
        "--start-timeout-s",
        str(args.start_timeout_s),
        "--model",
        args.model,
        *([] if args.tracker else ["--no-tracker"]),
        *(["--compile"] if args.compile else []),
        *(
            []
            if args.switch_interval_ms is None
            else ["--switch-interval-ms", str(args.switch_interval_ms)]
        ),
        "--out",
        str(args.out),
        *extra,
    ]
    # py-spy records the first pipeline process alone, while all of them run.
    profiled = ["--profile-s", str(args.profile_s)] if args.profile_s > 0 and not extra else []
    workers = [
        subprocess.Popen(
            [*common, "--streams", str(share), *(profiled if index == 0 else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index, share in enumerate(shares)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a pipeline process did not start: {line!r}")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            assert worker.stdout is not None
            results.append(json.loads(worker.stdout.readline()))
    except BaseException:
        # A failed or stopped run leaves no process behind to hold the GPU for the next one.
        for worker in workers:
            worker.kill()
        raise
    finally:
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
    return results


def ceiling(clip: Path, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    """(a): the decoders fed from memory (:func:`memory_decode_work`), ``streams`` sessions
    shared out over ``args.processes`` processes as the pipeline's streams are, over one window
    that starts in all of them together; in this process's threads with one."""
    if args.processes == 1:
        rate = threaded_rate(streams, memory_decode_work(clip, args.device), args)
        return {"fps": rate.fps, "process_fps": [round(rate.fps, 1)], "cpu_cores": rate.cpu_cores}
    results = run_processes(clip, streams, args, "--worker-decode-only")
    return {
        "fps": sum(result["fps"] for result in results),
        "process_fps": [round(result["fps"], 1) for result in results],
        "cpu_cores": sum(result["cpu_cores"] for result in results),
    }


def end_to_end_processes(clip: Path, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    """(b) and (c) with the streams shared out over ``args.processes`` pipeline processes,
    measured over one window that starts in all of them together."""
    results = run_processes(clip, streams, args)
    fps = sum(result["fps"] for result in results)
    return {
        "fps": fps,
        "processes": len(results),
        "process_fps": [round(result["fps"], 1) for result in results],
        "frames": sum(result["frames"] for result in results),
        "objects_per_frame": round(
            sum(r["objects_per_frame"] * r["frames"] for r in results)
            / max(1, sum(r["frames"] for r in results)),
            2,
        ),
        "batch_size": [result["batch_size"] for result in results],
        "first_batch_s": max(result["first_batch_s"] for result in results),
        "busy_share": [result["busy_share"] for result in results],
        "gpu_util_percent_mean": results[0]["gpu_util_percent_mean"],
        "gpu_util_percent_max": results[0]["gpu_util_percent_max"],
        "gpu_util_source": results[0]["gpu_util_source"],
        "machine_cpu_percent_mean": results[0]["machine_cpu_percent_mean"],
        "process_cpu_cores": round(sum(result["process_cpu_cores"] for result in results), 2),
        "cpu_count": os.cpu_count(),
        **({"profiles": results[0]["profiles"]} if "profiles" in results[0] else {}),
    }


def worker_main(args: argparse.Namespace) -> int:
    """One process of :func:`end_to_end_processes`: says ``ready`` once its pipeline runs,
    measures when told ``go``, prints its figures as JSON."""

    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    if args.worker_decode_only:
        if args.device == "cuda":
            set_gpu_wait()  # as the pipeline's decoders wait (a pipeline sets it itself)
        work = memory_decode_work(Path(args.worker_clip), args.device)  # demuxed before the window
        ready()
        rate = threaded_rate(args.streams[0], work, args)
        print(json.dumps({"fps": rate.fps, "cpu_cores": rate.cpu_cores}), flush=True)
        return 0
    result = end_to_end(Path(args.worker_clip), args.streams[0], args, ready=ready)
    print(json.dumps(result), flush=True)
    return 0


def measure(clip_name: str, clip: Path, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    decoder: Decoder = "nvdec" if args.device == "cuda" else "cpu"
    row: dict[str, Any] = {"clip": clip_name, "streams": streams}
    row["reader_fps"] = threaded_rate(streams, reader_work(clip, decoder), args).fps
    if args.device == "cuda":
        row["pynvvideocodec_fps"] = threaded_rate(streams, pynvvideocodec_work(clip), args).fps
    # The decoders' ceiling and the pipeline take turns, each ratio from a neighbouring pair; the
    # row gives the medians (the machine varies by a quarter from one run to the next, ceiling
    # included).
    rounds: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        limit = ceiling(clip, streams, args)
        try:
            e2e = (end_to_end_processes if args.processes > 1 else end_to_end)(clip, streams, args)
        except Exception as error:
            # Kept in the report beside the decoders' figures, which stand on their own.
            row["error"] = f"{type(error).__name__}: {error}"
            row.setdefault("ceiling_fps", limit["fps"])
            break
        rounds.append(
            {
                "ceiling": limit,
                "e2e": e2e,
                "summary": {
                    "ceiling_fps": round(limit["fps"], 1),
                    "e2e_fps": round(e2e["fps"], 1),
                    "ratio": round(e2e["fps"] / limit["fps"], 3) if limit["fps"] else None,
                    "gpu_util_percent_mean": e2e["gpu_util_percent_mean"],
                    "process_cpu_cores": e2e["process_cpu_cores"],
                },
            }
        )
    if not rounds:
        return row
    median_round = sorted(rounds, key=lambda r: r["e2e"]["fps"])[(len(rounds) - 1) // 2]
    row["e2e"] = median_round["e2e"]
    row["e2e_fps"] = statistics.median(r["e2e"]["fps"] for r in rounds)
    row["ceiling_fps"] = statistics.median(r["ceiling"]["fps"] for r in rounds)
    row["ceiling_process_fps"] = median_round["ceiling"]["process_fps"]
    row["ceiling_cpu_cores"] = round(median_round["ceiling"]["cpu_cores"], 2)
    ratios = [r["summary"]["ratio"] for r in rounds if r["summary"]["ratio"] is not None]
    row["e2e_over_ceiling"] = statistics.median(ratios) if ratios else None
    row["e2e_over_reader"] = row["e2e_fps"] / row["reader_fps"] if row["reader_fps"] else None
    if row.get("pynvvideocodec_fps"):
        row["e2e_over_pynvvideocodec"] = row["e2e_fps"] / row["pynvvideocodec_fps"]
    if len(rounds) > 1:
        row["rounds"] = [r["summary"] for r in rounds]
    row["streams_real_time"] = row["e2e_fps"] / CLIP_FPS
    row["ceiling_streams_real_time"] = row["ceiling_fps"] / CLIP_FPS
    row["reader_streams_real_time"] = row["reader_fps"] / CLIP_FPS
    return row


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'clip':<6} {'N':>4} {'reader':>8} {'ceiling':>8} {'e2e':>8} {'e2e/ceil':>8} "
        f"{'rt strm':>8} {'gpu %':>6} {'cpu cores':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if "e2e" not in row:
            lines.append(f"{row['clip']:<6} {row['streams']:>4} {row['reader_fps']:>8.0f}  failed")
            continue
        e2e = row["e2e"]
        ratio = row["e2e_over_ceiling"]
        gpu = e2e["gpu_util_percent_mean"]
        lines.append(
            f"{row['clip']:<6} {row['streams']:>4} {row['reader_fps']:>8.0f} "
            f"{row['ceiling_fps']:>8.0f} {row['e2e_fps']:>8.0f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>8} {row['streams_real_time']:>8.1f} "
            f"{'-' if gpu is None else gpu:>6} {e2e['process_cpu_cores']:>9.1f}"
        )
    return "\n".join(lines)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": args.device,
    }
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        try:
            import PyNvVideoCodec as nvc

            info["pynvvideocodec"] = getattr(nvc, "__version__", "unknown")
        except ImportError:
            info["pynvvideocodec"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--streams", type=int, nargs="+", help="default 32 64 128 (cpu: 2)")
    parser.add_argument("--clips", nargs="+", choices=["h264", "hevc"], default=["h264", "hevc"])
    parser.add_argument("--batch-size", type=int, default=64, help="largest model batch")
    parser.add_argument(
        "--no-tracker", dest="tracker", action="store_false", help="leave the tracker out"
    )
    parser.add_argument("--warmup-s", type=float, help="default 2 (cpu: 1)")
    parser.add_argument("--measure-s", type=float, help="default 5 (cpu: 2)")
    parser.add_argument("--start-timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--model", default="yolox-nano", help="the detector: a zoo name or an ONNX file"
    )
    parser.add_argument(
        "--compile", action="store_true", help="the detector through torch.compile (inductor)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measure each row this many times, the decoders' ceiling and the pipeline taking "
        "turns; the row gives the medians, and each pair's ratio",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/panoptes-bench"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/gpu_pipeline.json")
    parser.add_argument(
        "--processes", type=int, default=1, help="pipeline processes sharing the streams"
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        help="Python's thread switch interval (sys.setswitchinterval; its default is 5 ms)",
    )
    parser.add_argument(
        "--profile-s",
        type=float,
        default=0.0,
        help="record the pipeline process (with --processes, the first) with py-spy for this "
        "long within the measuring window, which it slows (needs py-spy)",
    )
    parser.add_argument(
        "--mps",
        action="store_true",
        help="run every process as a client of NVIDIA's Multi-Process Service (a daemon of this "
        "run's own, started before any CUDA work and stopped at the end), so that the kernels "
        "of several processes share the GPU instead of taking turns",
    )
    parser.add_argument("--mps-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-clip", help=argparse.SUPPRESS)
    parser.add_argument("--worker-decode-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cuda-wait",
        choices=sorted(GPU_WAIT_MODES),
        help="how threads wait for the GPU (PANOPTES_CUDA_WAIT; panoptes' default is block)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.cuda_wait:
        os.environ["PANOPTES_CUDA_WAIT"] = args.cuda_wait  # for the processes it starts too
    # Stopped (a time limit's SIGTERM), the run unwinds: its pipeline processes, and with --mps
    # the daemon, go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.profile_s > 0 and py_spy() is None:
        raise SystemExit("--profile-s: py-spy is not installed (pip install py-spy)")
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    # The shared models stand in for the zoo's downloads.
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(ASSETS / "models"))
    smoke = args.device == "cpu"
    args.streams = args.streams or ([2] if smoke else [32, 64, 128])
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (1.0 if smoke else 2.0)
    args.measure_s = args.measure_s if args.measure_s is not None else (2.0 if smoke else 5.0)
    if smoke:
        import torch

        # The model on torch's CPU device shares the cores with the decoders.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    if args.worker_clip:
        return worker_main(args)
    if args.mps:
        # The daemon quits only once its last client has gone: the benchmark runs as a child
        # process, and the daemon stops after it.
        arguments = sys.argv[1:] if argv is None else argv
        with mps_daemon():
            child = [sys.executable, __file__, *arguments, "--mps-client"]
            return subprocess.run([a for a in child if a != "--mps"], check=False).returncode
    return run_benchmark(args)


def run_benchmark(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.device == "cuda":
        set_gpu_wait()  # the decoders measured alone wait as the pipeline's do
    clips = {"hevc": HEVC_CLIP}
    if "h264" in args.clips:
        began = time.monotonic()
        clips["h264"] = h264_clip(HEVC_CLIP, args.work_dir)
        print(f"h264 clip ready in {time.monotonic() - began:.1f} s: {clips['h264']}", flush=True)
    rows: list[dict[str, Any]] = []
    for clip_name in args.clips:
        for streams in args.streams:
            row = measure(clip_name, clips[clip_name], streams, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_report(args, clips, rows, started)
    write_report(args, clips, rows, started)
    print(f"wrote {args.out}")
    print(table(rows))
    return 0


@contextmanager
def mps_daemon() -> Iterator[None]:
    """NVIDIA's MPS control daemon for this run, in a folder of its own; the processes started
    meanwhile are its clients."""
    import tempfile

    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        raise SystemExit("--mps: nvidia-cuda-mps-control is not on PATH (it comes with the driver)")
    with tempfile.TemporaryDirectory(prefix="panoptes-mps-") as folder:
        os.environ["CUDA_MPS_PIPE_DIRECTORY"] = folder
        os.environ["CUDA_MPS_LOG_DIRECTORY"] = folder
        subprocess.run([control, "-d"], check=True)
        try:
            yield
        finally:
            subprocess.run([control], input=b"quit\n", check=False, timeout=60)
            time.sleep(1.0)  # the daemon leaves its pipes as it exits


def write_report(
    args: argparse.Namespace, clips: dict[str, Path], rows: list[dict[str, Any]], started: float
) -> None:
    """The JSON report of the rows so far (written after each, so a cut run keeps them)."""
    smoke = args.device == "cpu"
    report = {
        "benchmark": "gpu_pipeline",
        "command": " ".join(
            [
                "benchmarks/gpu_pipeline.py",
                *("--mps" if a == "--mps-client" else a for a in sys.argv[1:]),
            ]
        ),
        "environment": environment(args),
        "settings": {
            "network_wh": NETWORK_WH,
            "model": args.model,
            "precision": "fp32" if smoke else "fp16",
            "tracker": "bytetrack",
            "compile": args.compile,
            "warmup_s": args.warmup_s,
            "measure_s": args.measure_s,
            "clip_fps": CLIP_FPS,
            "processes": args.processes,
            "repeats": args.repeats,
            "switch_interval_ms": args.switch_interval_ms,
            "mps": args.mps_client,
            "cuda_wait": gpu_wait_mode(),
            "clips": {name: str(path) for name, path in clips.items()},
        },
        "results": rows,
        "total_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
