"""The HTTP API against real pipelines served by uvicorn: streams listed, added and removed in
both API styles, errors, health, metrics and the MJPEG live view."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_tools import PATTERN_URI, Serve, pattern, tiled_config, wait_for

from panoptes import Pipeline
from panoptes.core.streams import StreamState
from panoptes.server import HttpProperties, HttpServer, ServerError, start_http
from panoptes.server.metrics import metrics_registry, render
from panoptes.server.streams import StreamTable


def live_ids(pipeline: Pipeline) -> set[int]:
    return {s.source_id for s in pipeline.streams() if s.state is not StreamState.REMOVED}


def frames_out(pipeline: Pipeline, source_id: int) -> int:
    return next((s.stats.frames_out for s in pipeline.streams() if s.source_id == source_id), 0)


def listed(client: httpx.Client) -> dict[int, dict[str, Any]]:
    response = client.get("/api/v1/streams")
    assert response.status_code == 200
    return {row["source_id"]: row for row in response.json()["streams"]}


def test_native_api_lists_adds_and_removes_streams(serve: Serve) -> None:
    pipeline, server = serve(tiled_config("a", "b"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        rows = wait_for(
            lambda: all(r["frames_out"] > 0 for r in listed(client).values()) and listed(client),
            "frames of the configured streams",
        )
        assert [(r["name"], r["uri"], r["camera_id"]) for r in rows.values()] == [
            ("a", PATTERN_URI, "0"),
            ("b", PATTERN_URI, "1"),
        ]

        response = client.post(
            "/api/v1/streams", json={"uri": PATTERN_URI, "name": "c", "real_time": True}
        )
        assert response.status_code == 201, response.text
        added = response.json()
        source_id = added["source_id"]
        assert added["name"] == "c" and response.headers["location"].endswith(f"/{source_id}")
        assert source_id in live_ids(pipeline)
        wait_for(lambda: frames_out(pipeline, source_id) > 0, "frames of the added stream")
        row = client.get(f"/api/v1/streams/{source_id}").json()
        assert row["state"] == "playing" and row["frames_decoded"] > 0

        assert client.delete(f"/api/v1/streams/{source_id}").status_code == 204
        assert source_id not in live_ids(pipeline)
        assert source_id not in listed(client)
        assert client.delete(f"/api/v1/streams/{source_id}").status_code == 404
        assert client.get(f"/api/v1/streams/{source_id}").status_code == 404
        missing = client.delete("/api/v1/streams/99")
        assert missing.status_code == 404 and missing.json() == {"detail": "no stream with id 99"}
        assert sorted(listed(client)) == [0, 1]


def ds_message(change: str, **value: Any) -> dict[str, Any]:
    """A body of DeepStream's stream add or remove, with its documented extra fields."""
    return {
        "key": "sensor",
        "value": {
            **value,
            "change": change,
            "metadata": {"resolution": "160 x90", "codec": "h264", "framerate": 15},
        },
        "headers": {"source": "vst", "created_at": "2021-06-01T14:34:13.417Z"},
    }


def test_deepstream_api_adds_and_removes_cameras(serve: Serve) -> None:
    pipeline, server = serve(tiled_config("a"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        add = ds_message(
            "camera_add", camera_id="gate", camera_name="front gate", camera_url=PATTERN_URI
        )
        # As DeepStream's examples send it: curl -d, so a form Content-Type.
        response = client.post(
            "/api/v1/stream/add",
            content=httpx.Request("POST", "/", json=add).content,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["reason"] == "STREAM_ADD_SUCCESS" and reply["status"] == "HTTP/1.1 200 OK"
        source_id = reply["source_id"]
        names = {s.source_id: s.name for s in pipeline.streams()}
        assert names[source_id] == "front gate"
        wait_for(lambda: frames_out(pipeline, source_id) > 0, "frames of the camera")

        info = client.get("/api/v1/stream/get-stream-info").json()
        assert info["reason"] == "GET_LIVE_STREAM_INFO_SUCCESS"
        assert info["stream-info"] == {
            "stream-count": 2,
            "stream-info": [
                {"camera_id": "0", "camera_name": "a", "source_id": 0},
                {"camera_id": "gate", "camera_name": "front gate", "source_id": source_id},
            ],
        }

        again = client.post("/api/v1/stream/add", json=add)
        assert again.status_code == 409 and again.json()["reason"] == "STREAM_ADD_FAIL"
        assert "gate" in again.json()["detail"]

        removed = client.post(
            "/api/v1/stream/remove", json=ds_message("camera_remove", camera_id="gate")
        )
        assert removed.status_code == 200 and removed.json()["reason"] == "STREAM_REMOVE_SUCCESS"
        assert source_id not in live_ids(pipeline)

        # The camera id is free again; a camera can also be removed by its URL.
        url = "test://ball?width=160&height=90&fps=15&frames=100000"
        client.post(
            "/api/v1/stream/add", json=ds_message("camera_add", camera_id="gate", camera_url=url)
        )
        by_url = client.post(
            "/api/v1/stream/remove", json=ds_message("camera_remove", camera_url=url)
        )
        assert by_url.json()["reason"] == "STREAM_REMOVE_SUCCESS"
        assert live_ids(pipeline) == {0}

        unknown = client.post(
            "/api/v1/stream/remove", json=ds_message("camera_remove", camera_id="gate")
        )
        assert unknown.status_code == 404 and unknown.json()["reason"] == "STREAM_REMOVE_FAIL"


def test_a_stream_that_cannot_open_is_listed_as_failed(serve: Serve, tmp_path: Any) -> None:
    pipeline, server = serve(tiled_config("a"))
    missing = tmp_path / "missing.mp4"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post("/api/v1/streams", json={"uri": str(missing), "name": "gone"})
        assert response.status_code == 201
        source_id = response.json()["source_id"]
        row = wait_for(
            lambda: listed(client)[source_id]["state"] == "failed" and listed(client)[source_id],
            "the stream to fail",
        )
        assert "missing.mp4" in row["error"] and row["errors"] == 1
        # Still listed after it left the pipeline, until deleted.
        wait_for(lambda: source_id not in {s.source_id for s in pipeline.streams()}, "retiring")
        assert listed(client)[source_id]["state"] == "failed"
        assert client.delete(f"/api/v1/streams/{source_id}").status_code == 204
        assert source_id not in listed(client)


BAD_STREAMS: list[tuple[str, Any, int, str]] = [
    ("/api/v1/streams", {"uri": "foo://camera"}, 400, "unknown URI scheme 'foo://'"),
    ("/api/v1/streams", {"uri": "test://ball?width=-3"}, 400, "width='-3'"),
    ("/api/v1/streams", {"name": "no uri"}, 422, "uri"),
    ("/api/v1/streams", {"uri": 5}, 422, "uri"),
    ("/api/v1/streams", {"uri": "x.mp4", "colour": "red"}, 422, "colour"),
    ("/api/v1/streams", "not json", 422, ""),
    ("/api/v1/stream/add", ds_message("camera_add", camera_id="c"), 422, "camera_url"),
    ("/api/v1/stream/add", ds_message("camera_add", camera_url=PATTERN_URI), 422, "camera_id"),
    (
        "/api/v1/stream/add",
        ds_message("camera_remove", camera_id="c", camera_url="x"),
        422,
        "camera_add",
    ),
    ("/api/v1/stream/add", {"key": "sensor"}, 422, "value"),
    ("/api/v1/stream/add", "{not json", 422, "not JSON"),
    (
        "/api/v1/stream/add",
        {**ds_message("camera_add", camera_id="c", camera_url="foo://x")},
        400,
        "unknown URI scheme",
    ),
    ("/api/v1/stream/remove", ds_message("camera_remove"), 422, "camera_id"),
    ("/api/v1/stream/remove", ds_message("camera_add", camera_id="c"), 422, "camera_remove"),
]


@pytest.fixture(scope="module")
def idle_server() -> Iterator[tuple[Pipeline, httpx.Client]]:
    """A server of a pipeline that is not started: enough for requests that must be refused."""
    pipeline = Pipeline({"sources": [pattern("a")], "sinks": [{"type": "web-view"}]})
    server = HttpServer(pipeline, host="127.0.0.1", port=0)
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield pipeline, client


@pytest.mark.parametrize(("path", "body", "status", "text"), BAD_STREAMS)
def test_malformed_requests_are_refused_with_the_reason(
    idle_server: tuple[Pipeline, httpx.Client], path: str, body: Any, status: int, text: str
) -> None:
    pipeline, client = idle_server
    if isinstance(body, str):
        response = client.post(path, content=body, headers={"Content-Type": "text/plain"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert text in response.text
    assert [s.source_id for s in pipeline.streams()] == [0]


def test_health_and_readiness_follow_the_pipeline(serve: Serve) -> None:
    pipeline, server = serve(tiled_config("a"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["pipeline"] == "playing"
        assert health["streams"] == 1 and health["uptime_s"] >= 0
        ready = client.get("/api/v1/health/get-dsready-state").json()
        assert ready == {
            "reason": "GET_DS_READINESS_INFO_SUCCESS",
            "status": "HTTP/1.1 200 OK",
            "health-info": {"ds-ready": "YES"},
        }
        pipeline.stop()
        assert pipeline.wait(15)
        assert client.get("/api/v1/health").json()["pipeline"] == "ended"
        assert client.get("/api/v1/health/get-dsready-state").json()["health-info"] == {
            "ds-ready": "NO"
        }
        response = client.post("/api/v1/streams", json={"uri": PATTERN_URI})
        assert response.status_code == 409 and "ended" in response.json()["detail"]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_read_the_pipeline_at_each_scrape(serve: Serve) -> None:
    pipeline, server = serve(tiled_config("a", "b"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        # The frame rate is measured between the server's samples, one a second.
        wait_for(lambda: all(r["fps"] for r in listed(client).values()), "frame rates")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = samples(response.text)

    def stream(name: str, source_id: int, **labels: str) -> float:
        key = {"source_id": str(source_id), "name": "ab"[source_id], **labels}
        return values[(name, frozenset(key.items()))]

    for source_id in (0, 1):
        assert 0 < stream("panoptes_stream_fps", source_id) < 100
        out = stream("panoptes_stream_frames_out_total", source_id)
        assert 0 < out <= stream("panoptes_stream_frames_decoded_total", source_id)
        for counter in ("dropped_frames", "corrupt_frames", "errors", "reconnects"):
            assert stream(f"panoptes_stream_{counter}_total", source_id) == 0
        assert stream("panoptes_stream_state", source_id, state="playing") == 1
        assert stream("panoptes_stream_state", source_id, state="failed") == 0
        quantiles = [
            stream("panoptes_stream_latency_seconds", source_id, quantile=q)
            for q in ("0.5", "0.95", "0.99")
        ]
        assert 0 <= quantiles[0] <= quantiles[1] <= quantiles[2] < 10
    elements = {
        dict(labels)["element"]: value
        for (name, labels), value in values.items()
        if name == "panoptes_element_batches_total"
    }
    assert elements.keys() == {"tiler", "web-view0"} and min(elements.values()) > 0
    assert (
        "panoptes_element_busy_seconds_total",
        frozenset({("element", "tiler"), ("kind", "tiler")}),
    ) in values
    assert values[("process_resident_memory_bytes", frozenset())] > 10_000_000
    assert values[("process_open_fds", frozenset())] > 3
    assert values[("panoptes_streams", frozenset())] == 2
    # Each app has its own registry: another one in the process registers without clashing.
    assert b"panoptes_stream_fps" in render(metrics_registry(StreamTable(pipeline)))


def mjpeg_pictures(client: httpx.Client, url: str, count: int) -> list[bytes]:
    """The first ``count`` JPEG parts of an MJPEG stream."""
    boundary = b"\r\n--frame\r\n"
    buffer = b""
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        assert content_type == "multipart/x-mixed-replace; boundary=frame"
        for chunk in response.iter_bytes():
            buffer += chunk
            if buffer.count(boundary) >= count:
                break
    assert buffer.startswith(b"--frame\r\n")
    pictures = []
    for part in buffer[len(b"--frame\r\n") :].split(boundary)[:count]:
        headers, _, data = part.partition(b"\r\n\r\n")
        assert b"Content-Type: image/jpeg" in headers
        assert f"Content-Length: {len(data)}".encode() in headers
        pictures.append(data)
    return pictures


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG OpenCV reads"
    return image


def test_mjpeg_delivers_successive_distinct_pictures(serve: Serve) -> None:
    _, server = serve(tiled_config("a", "b"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        wait_for(lambda: client.get("/snapshot.jpg").status_code == 200, "the first picture")
        pictures = [decode(data) for data in mjpeg_pictures(client, "/video.mjpeg", 4)]
        assert all(image.shape == (180, 320, 3) for image in pictures)
        for before, after in itertools.pairwise(pictures):
            assert np.abs(before.astype(int) - after.astype(int)).max() > 30  # the ball moved
        tiled = mjpeg_pictures(client, "/video.mjpeg?source_id=-1", 1)
        assert decode(tiled[0]).shape == (180, 320, 3)
        snapshot = client.get("/snapshot.jpg")
        assert snapshot.headers["content-type"] == "image/jpeg"
        assert decode(snapshot.content).shape == (180, 320, 3)
        assert client.get("/video.mjpeg?source_id=7").status_code == 404


def test_without_a_tiler_each_stream_has_its_own_picture(serve: Serve) -> None:
    config = tiled_config("a", "b")
    del config["tiler"]
    config["sinks"] = [{"type": "web-view", "width": 80}]
    _, server = serve(config)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        wait_for(lambda: client.get("/snapshot.jpg?source_id=1").status_code == 200, "a picture")
        (data,) = mjpeg_pictures(client, "/video.mjpeg?source_id=1", 1)
        assert decode(data).shape == (45, 80, 3)  # 160x90 scaled to the sink's width


def test_stopping_the_server_ends_open_video_streams(serve: Serve) -> None:
    _, server = serve(tiled_config("a"))
    assert server.view is not None
    ended = threading.Event()
    failures: list[Exception] = []

    def watch() -> None:
        try:
            with (
                httpx.Client(base_url=server.url, timeout=10) as client,
                client.stream("GET", "/video.mjpeg") as response,
            ):
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError as error:
            failures.append(error)
        ended.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    view = server.view
    wait_for(lambda: view.encoded > 0, "a picture to be sent")
    server.stop()
    assert ended.wait(10), "the video stream is still open"
    watcher.join()
    assert not failures  # ended as a complete response, not a broken connection


def test_a_pipeline_without_web_view_serves_no_video(serve: Serve) -> None:
    _, server = serve({"sources": [pattern("a")], "keep_alive": True, "perf": {"interval_s": 0}})
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in ("/video.mjpeg", "/snapshot.jpg"):
            response = client.get(path)
            assert response.status_code == 404 and "web-view" in response.json()["detail"]
        page = client.get("/")
        assert page.status_code == 200 and 'src="video.mjpeg"' in page.text


def test_a_taken_port_is_named_in_the_error() -> None:
    pipeline = Pipeline({"sources": [pattern("a")]})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"127.0.0.1:{port}: the address is already in use"):
            HttpServer(pipeline, host="127.0.0.1", port=port).start()


def test_start_http_serves_as_the_http_section_says() -> None:
    pipeline = Pipeline({"sources": [pattern("a")], "sinks": [{"type": "web-view"}]})
    server = start_http(pipeline, HttpProperties(host="127.0.0.1", port=0))
    try:
        assert server.port > 0 and server.view is not None
        assert httpx.get(f"{server.url}/api/v1/health").json()["pipeline"] == "created"
    finally:
        server.stop()
