"""Changes the text the osd writes for each object, as DeepStream's Python samples do with
``obj_meta.text_params.display_text``: here the class name, the score as a percentage and the
track id, and a per-frame count in the corner."""

from __future__ import annotations

from collections import Counter

from panoptes import Batch


def label_with_confidence(batch: Batch) -> None:
    for frame in batch:
        counts: Counter[str] = Counter()
        for obj in frame.objects:
            counts[obj.label] += 1
            track = f" #{obj.track_id}" if obj.track_id is not None else ""
            obj.display_text = f"{obj.label.upper()} {obj.confidence:.0%}{track}"
        summary = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items())) or "nothing"
        frame.meta.display_meta.add_text(summary, (10, frame.size_wh[1] - 30))
        frame.meta.user_meta["counts"] = dict(counts)
