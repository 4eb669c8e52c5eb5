"""Smart recording through the REST API: a clip of a stream from before to after the call."""

from __future__ import annotations

from pathlib import Path

import av
import httpx
from server_tools import Serve, pattern, wait_for

from panoptes import MessageType

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"


def test_record_start_and_stop_through_the_api(serve: Serve, tmp_path: Path) -> None:
    pipeline, server = serve(
        {
            "sources": [
                {
                    "uri": str(VIDEOS / "person-bicycle-car-detection.mp4"),
                    "name": "parking",
                    "real_time": True,
                    "loop": True,
                }
            ],
            "record": {"dir": str(tmp_path), "cache_s": 10, "before_s": 1, "after_s": 0},
            "keep_alive": True,
            "perf": {"interval_s": 0},
        }
    )
    finished: list[dict[str, object]] = []
    pipeline.bus.subscribe(
        lambda m: (
            finished.append(m.data) if m.type is MessageType.INFO and "path" in m.data else None
        )
    )
    wait_for(lambda: pipeline.frames_out() > 30, "the first frames")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        started = client.post("/api/v1/record/start", json={"source_id": 0})
        assert started.status_code == 200, started.text
        path = Path(started.json()["path"])
        assert path.parent == tmp_path
        wait_for(lambda: pipeline.frames_out() > 60, "a few more frames")
        stopped = client.post("/api/v1/record/stop", json={"source_id": 0})
        assert stopped.status_code == 200 and Path(stopped.json()["path"]) == path
        assert client.post("/api/v1/record/stop", json={"source_id": 0}).status_code == 404
        unknown = client.post("/api/v1/record/start", json={"source_id": 7})
        assert unknown.status_code == 409 and "7" in unknown.json()["detail"]
        malformed = client.post("/api/v1/record/start", json={"source_id": 0, "before_s": -1})
        assert malformed.status_code == 422
    wait_for(lambda: any(data.get("path") == str(path) for data in finished), "the clip")
    with av.open(str(path)) as clip:
        frames = sum(1 for _ in clip.decode(video=0))
    assert frames >= 12  # at least the second before the call, at 12 FPS


def test_record_endpoints_without_a_record_section(serve: Serve) -> None:
    _, server = serve({"sources": [pattern("a")], "keep_alive": True, "perf": {"interval_s": 0}})
    reply = httpx.post(f"{server.url}/api/v1/record/start", json={"source_id": 0}, timeout=10)
    assert reply.status_code == 404 and "record:" in reply.json()["detail"]
