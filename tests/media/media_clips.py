"""Paths of the shared clips, and helpers that derive broken or re-muxed copies of them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
ONE_BY_ONE = VIDEOS / "one-by-one-person-detection.mp4"  # H.264 768x432, 10 fps, moov first
PARKING = VIDEOS / "person-bicycle-car-detection.mp4"  # H.264 + AAC, moov last, 459 of 467
RETAIL = VIDEOS / "Retail02_short.mp4"  # HEVC 1920x1080, 30 fps, + AAC, moov last


def remux(source: Path, destination: Path, container_format: str, packets: int) -> Path:
    """Copy the first ``packets`` video packets of ``source`` into a new container, no re-encode."""
    with av.open(str(source)) as input_container:
        input_stream = input_container.streams.video[0]
        with av.open(str(destination), "w", format=container_format) as output_container:
            output_stream = output_container.add_stream_from_template(input_stream)
            copied = 0
            for packet in input_container.demux(input_stream):
                if packet.dts is None:  # the flush packet at the end
                    continue
                packet.stream = output_stream
                output_container.mux(packet)
                copied += 1
                if copied == packets:
                    break
    return destination


def damage(source: Path, destination: Path, *, chunks: int, chunk_bytes: int, seed: int) -> Path:
    """Copy ``source`` with ``chunks`` runs of random bytes spread over 30%..70% of its length.

    For the shared clips that span lies inside the ``mdat`` box: packets are damaged, the
    container's index is not.
    """
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    for start in np.linspace(0.3 * len(data), 0.7 * len(data) - chunk_bytes, chunks).astype(int):
        data[start : start + chunk_bytes] = rng.integers(0, 256, chunk_bytes, np.uint8).tobytes()
    destination.write_bytes(bytes(data))
    return destination


def truncate(source: Path, destination: Path) -> Path:
    """Copy the first half of ``source``'s bytes, as a download or recording cut short."""
    data = source.read_bytes()
    destination.write_bytes(data[: len(data) // 2])
    return destination
