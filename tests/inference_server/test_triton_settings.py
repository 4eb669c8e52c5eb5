"""The Triton settings of the infer element and of the backend, checked without a server."""

from __future__ import annotations

from typing import Any

import pytest

from panoptes import MessageType, Pipeline
from panoptes.core.errors import ConfigError, ModelError
from panoptes.models.backends.triton import _split_url, served_model_name


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("triton.local", "grpc", ("triton.local:8001", "triton.local")),
        ("triton.local", "http", ("triton.local:8000", "triton.local")),
        ("10.0.0.5:9001", "grpc", ("10.0.0.5:9001", "10.0.0.5")),
        ("grpc://10.0.0.5:9001", "grpc", ("10.0.0.5:9001", "10.0.0.5")),
        ("http://localhost:8000/", "http", ("localhost:8000", "localhost")),
        ("[::1]:8001", "grpc", ("[::1]:8001", "::1")),
    ],
)
def test_urls_are_host_and_port(url: str, protocol: Any, expected: tuple[str, str]) -> None:
    assert _split_url(url, protocol) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://triton.local:8001", "TLS is not supported"),
        ("triton.local:port", "the port 'port' is not a number"),
        (":8001", "has no host"),
    ],
)
def test_bad_urls_are_refused_by_name(url: str, expected: str) -> None:
    with pytest.raises(ModelError, match=expected):
        _split_url(url, "grpc")


@pytest.mark.parametrize(
    ("model", "served"),
    [
        ("yolox-nano", "yolox_nano"),
        ("models/person_v2.onnx", "person_v2"),
        ("ensemble_detector", "ensemble_detector"),
    ],
)
def test_the_served_name_comes_from_the_model(model: str, served: str) -> None:
    assert served_model_name(model) == served


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"device": "cuda"}, "the server's model configuration decides where the model runs"),
        ({"batch_size": 4}, "backend triton sends the whole batch"),
    ],
)
def test_settings_that_are_the_servers_are_refused(setting: dict[str, Any], expected: str) -> None:
    config = {
        "sources": [{"uri": "clip.mp4"}],
        "infer": [{"backend": "triton", **setting}],
    }
    with pytest.raises(ConfigError, match=expected):
        Pipeline(config)


def test_triton_settings_on_another_backend_are_ignored_with_a_warning() -> None:
    pipeline = Pipeline(
        {
            "sources": [{"type": "test-source", "frames": 1, "width": 64, "height": 48}],
            "infer": [{"instances": 1, "url": "triton.local:8001", "retries": 5}],
        }
    )
    pipeline.build()
    warnings = [m.text for m in pipeline.bus.history if m.type is MessageType.WARNING]
    assert "infer[0].url is ignored: it is for backend triton, and this model runs on " in (
        " ".join(warnings)
    )
    assert any(text.startswith("infer[0].retries is ignored") for text in warnings)
    assert pipeline.run().ok
