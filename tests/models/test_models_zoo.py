"""The model zoo: lookup on PANOPTES_MODEL_PATH, downloads from a real local HTTP server."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from panoptes.core.errors import ModelError, ModelNotFoundError
from panoptes.models.zoo import ZOO, ModelEntry, list_models, pull, resolve_model

FASTESTDET_SHA256 = "31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880"


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


class _Server(ThreadingHTTPServer):
    requests_served = 0

    def finish_request(self, request: object, client_address: object) -> None:
        self.requests_served += 1
        super().finish_request(request, client_address)  # type: ignore[arg-type]


@dataclasses.dataclass
class _Site:
    folder: Path
    url: str
    server: _Server


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Site]:
    """A real HTTP server on 127.0.0.1 serving ``folder``."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield _Site(folder, f"http://127.0.0.1:{server.server_address[1]}", server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, and no other folder to find models in."""
    monkeypatch.setenv("PANOPTES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PANOPTES_MODEL_PATH", raising=False)
    monkeypatch.delenv("PANOPTES_OFFLINE", raising=False)
    return tmp_path / "cache" / "models"


def _entry(url: str, sha256: str = FASTESTDET_SHA256) -> ModelEntry:
    return ModelEntry(
        name="fastestdet-test",
        filename="FastestDet.onnx",
        url=url,
        sha256=sha256,
        parser="fastestdet",
        license="BSD-3-Clause",
    )


def test_entries_are_pinned() -> None:
    entry = ZOO["yolox-nano"]
    assert entry.filename == "yolox_nano.onnx" and entry.parser == "yolox"
    assert "/0f785c070ce8da070aeaeef46c0da7904ff7012e/" in entry.url
    assert entry.sha256 == "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"
    assert ZOO["fastestdet"].sha256 == FASTESTDET_SHA256


def test_zoo_name_found_on_the_model_path(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANOPTES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PANOPTES_OFFLINE", "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PANOPTES_MODEL_PATH", os.pathsep.join([str(empty), str(models_dir)]))
    resolved = resolve_model("yolox-nano")
    assert resolved.path == models_dir / "yolox_nano.onnx"
    assert resolved.entry is ZOO["yolox-nano"]
    assert dict((entry.name, path) for entry, path in list_models()) == {
        "yolox-nano": models_dir / "yolox_nano.onnx",
        "fastestdet": models_dir / "FastestDet.onnx",
    }


def test_paths_are_used_as_they_are(models_dir: Path) -> None:
    absolute = models_dir / "FastestDet.onnx"
    assert resolve_model(str(absolute)).path == absolute
    assert resolve_model(str(absolute)).entry is None
    assert resolve_model("FastestDet.onnx", base_dir=models_dir).path == absolute


def test_unknown_model_lists_the_zoo(cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("models/yolo-wrong.onnx")
    assert "no such file" in str(caught.value)
    assert "zoo models: fastestdet, yolox-nano" in str(caught.value)


def test_download_checks_sha256_and_keeps_the_file(
    models_dir: Path, site: _Site, cache: Path
) -> None:
    shutil.copy(models_dir / "FastestDet.onnx", site.folder / "FastestDet.onnx")
    entry = _entry(f"{site.url}/FastestDet.onnx")
    assert [path for _, path in list_models()] == [None, None]
    path = pull(entry)
    assert path == cache / "FastestDet.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FASTESTDET_SHA256
    assert sorted(p.name for p in cache.iterdir()) == ["FastestDet.onnx"]  # no partial file left
    assert pull(entry) == path and site.server.requests_served == 1  # found, not fetched again


def test_sha256_mismatch_keeps_nothing(models_dir: Path, site: _Site, cache: Path) -> None:
    shutil.copy(models_dir / "FastestDet.onnx", site.folder / "FastestDet.onnx")
    entry = _entry(f"{site.url}/FastestDet.onnx", sha256="0" * 64)
    with pytest.raises(ModelError, match=r"expected 0000.*it was not kept") as caught:
        pull(entry)
    assert not isinstance(caught.value, ModelNotFoundError)
    assert list(cache.iterdir()) == []


def test_http_error_is_model_not_found(site: _Site, cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="cannot be downloaded"):
        pull(_entry(f"{site.url}/missing.onnx"))
    assert list(cache.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_server_names_the_file_and_the_folders(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANOPTES_MODEL_PATH", str(tmp_path / "models"))
    url = f"http://127.0.0.1:{_closed_port()}/FastestDet.onnx"
    with pytest.raises(ModelNotFoundError) as caught:
        pull(_entry(url))
    message = str(caught.value)
    assert "file FastestDet.onnx is missing" in message and url in message
    assert str(tmp_path / "models") in message and str(cache) in message


def test_offline_does_not_download(
    site: _Site, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANOPTES_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="PANOPTES_OFFLINE"):
        pull(_entry(f"{site.url}/FastestDet.onnx"))
    assert site.server.requests_served == 0
    with pytest.raises(ModelNotFoundError, match=r"yolox_nano\.onnx is missing"):
        resolve_model("yolox-nano")
