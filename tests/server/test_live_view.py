"""The live view and the web-view sink: lazy JPEG encoding, its rate limit, which picture a
client gets, and the sink's config."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from panoptes import Pipeline
from panoptes.config.schema import PipelineConfig
from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.core.frame import TILED_SOURCE_ID, Batch, Frame, StreamEvent
from panoptes.core.registry import load_kind
from panoptes.elements.web_view import HttpProperties, WebView, WebViewProperties
from panoptes.server import LiveView, find_view


def picture(level: int, size_wh: tuple[int, int] = (160, 90)) -> np.ndarray:
    width, height = size_wh
    return np.full((height, width, 3), level, np.uint8)


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG OpenCV reads"
    return image


def test_an_unwatched_view_encodes_nothing() -> None:
    view = LiveView()
    for level in range(100):
        view.publish(0, picture(level))
    assert view.encoded == 0
    assert view.latest_seq(0) == 100


def test_encodes_the_latest_picture_once_for_every_client() -> None:
    view = LiveView(max_fps=1000.0)
    assert view.jpeg(0) is None
    view.publish(0, picture(10))
    view.publish(0, picture(200))
    first = view.jpeg(0)
    assert first is not None and first.seq == 2 and first.source_id == 0
    assert abs(int(decode(first.data).mean()) - 200) <= 2
    assert view.jpeg(0) is first  # nothing new: the same bytes for the next client
    assert view.encoded == 1
    time.sleep(0.01)  # past 1 / max_fps
    view.publish(0, picture(50))
    newer = view.jpeg(0)
    assert newer is not None and newer.seq == 3 and view.encoded == 2


def test_max_fps_bounds_the_encoding() -> None:
    view = LiveView(max_fps=0.001)  # one picture every 1000 s
    view.publish(0, picture(10))
    first = view.jpeg(0)
    view.publish(0, picture(200))
    assert view.jpeg(0) is first and view.encoded == 1
    assert view.latest_seq(0) == 2


def test_scales_wide_pictures_down_keeping_the_aspect_ratio() -> None:
    view = LiveView(width=80, jpeg_quality=90)
    view.publish(0, picture(120, (160, 90)))
    view.publish(1, picture(120, (64, 36)))
    wide, narrow = view.jpeg(0), view.jpeg(1)
    assert wide is not None and narrow is not None
    assert decode(wide.data).shape == (45, 80, 3)
    assert decode(narrow.data).shape == (36, 64, 3)


def test_default_source_is_the_tiled_view_else_the_first_stream() -> None:
    view = LiveView()
    assert view.default_source() is None
    view.publish(3, picture(1))
    view.publish(1, picture(1))
    assert view.default_source() == 1
    view.publish(TILED_SOURCE_ID, picture(1))
    assert view.default_source() == TILED_SOURCE_ID
    view.forget(TILED_SOURCE_ID)
    view.forget(1)
    assert view.source_ids() == [3] and view.latest_seq(1) is None


def test_listeners_hear_of_pictures_and_close() -> None:
    view = LiveView()
    heard: list[int] = []

    def listener() -> None:
        heard.append(len(heard))

    view.subscribe(listener)
    view.publish(0, picture(1))
    view.close()
    view.unsubscribe(listener)
    view.publish(0, picture(2))
    assert len(heard) == 2 and view.closed


def test_rejects_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="max_fps"):
        LiveView(max_fps=0)


def make_frame(source_id: int, level: int) -> Frame:
    return Frame(source_id, f"cam{source_id}", 0, None, 0.0, (160, 90), picture(level))


def test_sink_keeps_each_streams_picture_until_it_leaves() -> None:
    sink = WebView(WebViewProperties(), name="web-view0", context=BuildContext(bus=Bus()))
    sink.build()
    sink.process(Batch([make_frame(0, 10), make_frame(1, 20)]))
    assert sink.view.source_ids() == [0, 1]
    sink.process(Batch([make_frame(0, 30)], events=[StreamEvent("removed", 1, "cam1")]))
    assert sink.view.source_ids() == [0]
    sink.close()
    assert sink.view.closed


def test_kind_and_config_sections() -> None:
    assert load_kind("web-view") is WebView
    config = PipelineConfig.model_validate(
        {
            "sources": [{"uri": "test://ball"}],
            "sinks": [{"type": "web-view", "max_fps": 5, "width": 640}],
            "http": {"port": 9000, "jpeg_quality": 60},
        }
    )
    assert isinstance(config.sinks[0], WebViewProperties) and config.sinks[0].width == 640
    assert config.http == HttpProperties(port=9000, jpeg_quality=60)
    assert config.http.host == "0.0.0.0" and config.http.view
    assert config.http.web_view_sink() == WebViewProperties(max_fps=15.0, jpeg_quality=60)
    assert PipelineConfig.model_validate({"sources": [{"uri": "x.mp4"}]}).http is None
    with pytest.raises(ValueError, match="web-view"):
        PipelineConfig.model_validate({"sources": [{"uri": "x.mp4"}], "sinks": [{"type": "?"}]})


def test_find_view_finds_the_sink_of_a_pipeline() -> None:
    with_view = Pipeline({"sources": [{"uri": "test://ball"}], "sinks": [{"type": "web-view"}]})
    view = find_view(with_view)
    sink = with_view.element("web-view0")
    assert isinstance(view, LiveView) and isinstance(sink, WebView) and view is sink.view
    without = Pipeline({"sources": [{"uri": "test://ball"}]})
    assert find_view(without) is None


def test_public_api() -> None:
    import panoptes.server

    assert sorted(panoptes.server.__all__) == [
        "HttpProperties",
        "HttpServer",
        "JpegPicture",
        "LiveView",
        "ServerError",
        "create_app",
        "find_view",
        "start_http",
    ]
    assert all(hasattr(panoptes.server, name) for name in panoptes.server.__all__)
