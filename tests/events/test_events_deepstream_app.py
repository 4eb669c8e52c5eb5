"""A deepstream-app configuration with a message broker sink (type=6) runs unchanged: its events
reach a real Redis server through the outbox, in DeepStream's minimal schema."""

from __future__ import annotations

import json
from pathlib import Path

from event_brokers import Server, read_redis

from cli_tools import panoptes

DATA = Path(__file__).resolve().parents[1] / "data" / "deepstream"
VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"


def test_a_type_6_sink_delivers_to_redis(tmp_path: Path, redis: Server) -> None:
    (tmp_path / "app.txt").write_text(
        "[source0]\nenable=1\ntype=2\n"
        f"uri=file://{VIDEOS / 'person-bicycle-car-detection.mp4'}\n"
        "[primary-gie]\nenable=1\n"
        f"config-file={DATA / 'config_infer_primary_yolox.txt'}\n"
        "[tracker]\nenable=1\n"
        f"ll-config-file={DATA / 'config_tracker_NvDCF_perf.yml'}\n"
        "[sink0]\nenable=1\ntype=6\n"
        "msg-broker-proto-lib=/opt/nvidia/deepstream/deepstream/lib/libnvds_redis_proto.so\n"
        f"msg-broker-conn-str=127.0.0.1;{redis.port}\n"
        "topic=ds-app-events\n"
        "msg-conv-payload-type=1\n"
        "[sink1]\nenable=1\ntype=1\n"
    )
    jsonl = tmp_path / "meta.jsonl"
    result = panoptes(
        "run",
        str(tmp_path / "app.txt"),
        *("--set", "sources[0].max_frames=60"),
        *("--set", f"sinks[1]={{type: jsonl, path: {jsonl}}}"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in jsonl.read_text().splitlines()]
    with_people = [f for f in frames if f["objects"]]
    assert with_people, "the clip shows objects in its first 60 frames"
    messages = read_redis(f"redis://127.0.0.1:{redis.port}/0", "ds-app-events")
    assert messages
    assert len({m["messageid"] for m in messages}) == len(messages)
    # The minimal schema: one message per frame with objects, "trackid|x1|y1|x2|y2|label".
    assert len(messages) == len(with_people)
    for message, frame in zip(messages, with_people, strict=True):
        assert len(message["objects"]) == len(frame["objects"])
        track_id, *_, label = message["objects"][0].split("|")
        assert label == frame["objects"][0]["label"]
        assert int(track_id) == frame["objects"][0]["track_id"]
