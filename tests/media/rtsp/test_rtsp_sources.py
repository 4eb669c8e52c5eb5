"""RTSP cameras as pipeline sources, over TCP (the default) and UDP (``?transport=udp``)."""

from __future__ import annotations

import pytest
from rtsp_served import ServedClips

from panoptes import Pipeline


@pytest.mark.parametrize("query", ["", "?transport=udp"])
def test_a_pipeline_reads_an_rtsp_camera(served: ServedClips, query: str) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": served.url("/hall") + query,
                    "name": "hall",
                    "max_frames": 30,
                    "frame_policy": "every",  # no frame dropped: exactly 30 out
                }
            ],
            "perf": {"interval_s": 0},
        }
    )
    summary = pipeline.run()
    (stream,) = summary.streams
    assert summary.ok, summary.errors
    assert stream.state == "ended" and stream.frames == 30 and stream.dropped == 0
