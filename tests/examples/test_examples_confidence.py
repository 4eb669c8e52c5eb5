"""examples/confidence: a probe that rewrites the text the osd draws for each object."""

from __future__ import annotations

import json
import re
from pathlib import Path

from panoptes import Batch, Pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "confidence" / "confidence.yaml"


def test_display_text_is_rewritten_before_the_osd(tmp_path: Path) -> None:
    pipeline = Pipeline.from_config(
        EXAMPLE,
        overrides=[
            "sources[0].max_frames=30",
            "sources[1].max_frames=30",
            f"sinks[0].path={tmp_path / 'tiled.mp4'}",
            f"sinks[1].path={tmp_path / 'meta.jsonl'}",
            "perf.interval_s=0",
        ],
    )
    texts: list[str] = []
    summaries: list[str] = []

    def read_osd_input(batch: Batch) -> None:
        for frame in batch:  # the tiled picture, with every stream's objects
            texts.extend(t for t in frame.objects.display_text if t is not None)
            summaries.extend(t.text for t in frame.meta.display_meta.texts)

    pipeline.add_probe("tiler", read_osd_input)
    assert pipeline.run().ok
    assert texts and all(re.fullmatch(r"[A-Z ]+ \d{1,3}% #\d+", text) for text in texts)
    assert any(text.startswith("PERSON ") for text in texts)
    assert any(re.search(r"\bperson: \d+", summary) for summary in summaries), summaries[:5]
    records = [json.loads(line) for line in (tmp_path / "meta.jsonl").open()]
    assert len(records) == 60
    for record in records:
        people = sum(o["label"] == "person" for o in record["objects"])
        assert record["user_meta"]["counts"].get("person", 0) == people
    assert (tmp_path / "tiled.mp4").stat().st_size > 0
