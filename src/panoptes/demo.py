"""The bundled demo: several sample camera streams through the default detector and a tracker,
into a tiled video with labelled boxes and a metadata file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def sample_cache() -> Path:
    base = os.environ.get("PANOPTES_CACHE_DIR") or Path.home() / ".cache" / "panoptes"
    return Path(base) / "samples"


def demo_config(
    videos: Path | None, *, output: Path, model: str = "yolox-nano", max_frames: int | None = None
) -> dict[str, Any]:
    """A config dict for the demo: the .mp4 clips of ``videos`` when it exists, else clips made
    from scikit-image's photos (astronaut, chelsea, coffee) in the user cache. The metadata goes
    to ``output``, the tiled video beside it (``tiled.mp4``)."""
    from panoptes.media.samples import default_sample_sources

    clips = default_sample_sources(videos if videos and videos.is_dir() else None, sample_cache())
    sources: list[dict[str, Any]] = [{"uri": str(clip), "name": clip.stem} for clip in clips]
    config: dict[str, Any] = {
        "sources": sources,
        "mux": {"batch_size": len(sources), "batched_push_timeout_ms": 40},
        "infer": [{"name": "detector", "model": model, "threshold": 0.35}],
        "tracker": {"type": "bytetrack"},
        "tiler": {"width": 1280, "height": 720},
        "osd": {},
        "sinks": [
            {"type": "jsonl", "path": str(output)},
            {"type": "file", "path": str(demo_video(output))},
        ],
        "perf": {"interval_s": 5},
    }
    if max_frames:
        for source in sources:
            source["max_frames"] = max_frames
    return config


def demo_video(output: Path) -> Path:
    """Where the demo writes its tiled video: beside the metadata."""
    return output.with_name("tiled.mp4")
