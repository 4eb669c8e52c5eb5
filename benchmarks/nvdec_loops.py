"""NVDEC's own rate, and what each step around it costs, in one process: N threads, each with a
decoder of its own, looping over one clip for a few seconds; frames/s and CPU cores per loop.

The loops:

- ``memory_decode``: the clip's packets demuxed once into memory as NVDEC is given them (Annex B,
  panoptes' ``AnnexB``), each thread's decoder kept from pass to pass: NVDEC with as little
  Python as can be, one ``Decode`` call per packet; the decoders' ceiling.
- ``memory_decode_dlpack``: the same, each picture copied out as panoptes copied it before it
  went through the CUDA driver: ``torch.from_dlpack``, ``clone``, the stream synchronised.
- ``memory_decode_memcpy``: the same, each picture copied out by the CUDA runtime's
  ``cudaMemcpyAsync`` through ``ctypes`` and the stream synchronised, without the lock.
- ``demux_decode``: PyAV demuxing the file and the Annex B filter on every pass, then NVDEC, no
  copy.
- ``reader``: panoptes' NVDEC reader (``open_reader(..., decoder="nvdec", loop=True)``).

On a GPU machine: ``python benchmarks/nvdec_loops.py --threads 16 --out nvdec_loops.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import threading
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from gpu_pipeline import (
    HEVC_CLIP,
    Work,
    memory_decode_work,
    nvdec_decode,
    reader_work,
    threaded_rate,
)
from panoptes.core.gpu_wait import set_gpu_wait
from panoptes.media._nvdec import NVDEC_CODECS, AnnexB, PyNvVideoCodecBackend


def loops(clip: Path) -> dict[str, Work]:
    import PyNvVideoCodec as nvc
    import torch
    from torch.utils.dlpack import from_dlpack

    runtime = next(
        (lib for name in ("libcudart.so.13", "libcudart.so.12") if (lib := _load(name))), None
    )

    def take_dlpack(frame: Any, stream: Any) -> None:
        from_dlpack(frame).clone(memory_format=torch.contiguous_format)
        stream.synchronize()

    def take_memcpy(frame: Any, stream: Any) -> None:
        height, width = frame.shape
        image = torch.empty((height, width), dtype=torch.uint8, device="cuda")
        handle = ctypes.c_void_p(stream.cuda_stream)
        assert runtime is not None
        runtime.cudaMemcpyAsync(
            ctypes.c_void_p(image.data_ptr()),
            ctypes.c_void_p(frame.GetPtrToPlane(0)),
            ctypes.c_size_t(height * width),
            3,  # cudaMemcpyDeviceToDevice
            handle,
        )
        runtime.cudaStreamSynchronize(handle)

    def demux_decode(stop: threading.Event, count: list[int]) -> None:
        decoder = None
        while not stop.is_set():
            with av.open(str(clip)) as container:
                stream = container.streams.video[0]
                if decoder is None:
                    codec = getattr(nvc.cudaVideoCodec, NVDEC_CODECS[stream.codec_context.name])
                    decoder = nvc.CreateDecoder(gpuid=0, codec=codec, usedevicememory=True)
                annexb = AnnexB(stream)
                for packet in container.demux(stream):
                    for data, pts in annexb.convert(packet if packet.size else None):
                        buffer = np.frombuffer(cast(bytes, data), np.uint8)
                        count[0] += len(nvdec_decode(nvc, decoder, buffer, pts))
                    if stop.is_set():
                        return

    chosen: dict[str, Work] = {
        "memory_decode": memory_decode_work(clip, "cuda"),
        "memory_decode_dlpack": memory_decode_work(clip, "cuda", take_dlpack),
        "demux_decode": demux_decode,
        "reader": reader_work(clip, "nvdec"),
    }
    if runtime is not None:
        chosen["memory_decode_memcpy"] = memory_decode_work(clip, "cuda", take_memcpy)
    return chosen


def _load(name: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=HEVC_CLIP)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="each loop this many times, in turn")
    parser.add_argument("--warmup-s", type=float, default=1.5)
    parser.add_argument("--measure-s", type=float, default=3.0)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    reason = PyNvVideoCodecBackend().unavailable_reason(0)
    if reason is not None:
        raise SystemExit(f"nvdec_loops needs NVDEC on GPU 0: {reason}")
    set_gpu_wait()
    chosen = loops(args.clip)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    for repeat in range(args.repeats):
        for name, work in chosen.items():
            rate = threaded_rate(args.threads, work, args)
            results[name].append({"fps": round(rate.fps, 1), "cpu_cores": round(rate.cpu_cores, 2)})
            print(repeat, name, results[name][-1], flush=True)
    report = {
        "benchmark": "nvdec_loops",
        "clip": str(args.clip),
        "threads": args.threads,
        "warmup_s": args.warmup_s,
        "measure_s": args.measure_s,
        "results": results,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
