"""The converted model kept on disk: built once, loaded after, rebuilt when unusable."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import fx

from panoptes.models.backends import pytorch
from panoptes.models.backends.pytorch import TorchBackend
from panoptes.models.gpu.cache import ArtefactCache, ArtefactKey, CacheWarning, cache_root
from panoptes.models.gpu.convert import convert_for_batch

# A small YOLOX-style model: quick to convert.
MODEL = "light_person_detector_192.onnx"


@pytest.fixture(scope="module")
def converted(shared_models: Path) -> dict[int, fx.GraphModule]:
    """The model converted for batches of 1 and 2, once for the module."""
    cpu = torch.device("cpu")
    return {
        batch: convert_for_batch(shared_models / MODEL, batch, (192, 192), cpu) for batch in (1, 2)
    }


@pytest.fixture
def conversions(converted: dict[int, fx.GraphModule], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Conversions stand in for by copies of the module's: the batch size of each one asked
    for. The tests of the cache are about when a model is converted, not how."""
    asked: list[int] = []

    def convert(path: Path, batch_size: int, *args: object) -> fx.GraphModule:
        asked.append(batch_size)
        return copy.deepcopy(converted[batch_size])

    monkeypatch.setattr(pytorch, "convert_for_batch", convert)
    return asked


def _key(**changes: object) -> ArtefactKey:
    fields: dict[str, object] = {
        "model_sha256": "ab" * 32,
        "backend": "torch",
        "precision": "fp32",
        "batch_size": 1,
        "input_size_wh": (192, 192),
        "device": "cpu",
        "tools": (("torch", torch.__version__),),
    }
    fields.update(changes)
    return ArtefactKey(**fields)  # type: ignore[arg-type]


def test_second_start_loads_the_cached_model(
    shared_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = TorchBackend(shared_models / MODEL, batch_size=2, cache_dir=tmp_path)
    assert not first.cache_hit and first.artefact_path.is_file()
    assert first.artefact_path.parent == tmp_path and first.artefact_path.name.startswith(
        "light_person_detector_192-"
    )
    second = TorchBackend(shared_models / MODEL, batch_size=2, cache_dir=tmp_path)
    assert second.cache_hit and second.artefact_path == first.artefact_path
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 192, 192)).astype(np.float32)
    np.testing.assert_array_equal(first.run(batch)["output"], second.run(batch)["output"])
    with capsys.disabled():  # a figure for the record, not an assertion
        print(f"\n{MODEL} load: first {first.load_s:.2f} s, cached {second.load_s:.2f} s")


def test_default_folder_is_the_panoptes_cache(
    shared_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conversions: list[int]
) -> None:
    monkeypatch.setenv("PANOPTES_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    backend = TorchBackend(shared_models / MODEL, cache_dir=None)
    assert backend.artefact_path.parent == tmp_path / "torch"


def test_batch_size_and_precision_get_their_own_files(
    shared_models: Path, tmp_path: Path, conversions: list[int]
) -> None:
    one = TorchBackend(shared_models / MODEL, batch_size=1, cache_dir=tmp_path)
    two = TorchBackend(shared_models / MODEL, batch_size=2, cache_dir=tmp_path)
    assert one.artefact_path != two.artefact_path and conversions == [1, 2]
    assert _key(precision="fp16").digest() != _key().digest()
    assert _key(device="cuda NVIDIA H100 sm90").digest() != _key().digest()
    assert _key(tools=(("torch", "0.0"),)).digest() != _key().digest()


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
        lambda path: path.write_bytes(b"not a torch file"),
        lambda path: torch.save({"key": {}, "module": None}, path),
    ],
    ids=["truncated", "garbage", "foreign"],
)
def test_an_unusable_file_is_rebuilt_with_a_warning(
    shared_models: Path, tmp_path: Path, damage: Callable[[Path], object], conversions: list[int]
) -> None:
    built = TorchBackend(shared_models / MODEL, cache_dir=tmp_path)
    damage(built.artefact_path)
    with pytest.warns(CacheWarning, match="cannot be used.*building it again"):
        rebuilt = TorchBackend(shared_models / MODEL, cache_dir=tmp_path)
    assert not rebuilt.cache_hit and conversions == [1, 1]
    assert TorchBackend(shared_models / MODEL, cache_dir=tmp_path).cache_hit
    assert conversions == [1, 1]


def test_a_file_built_for_another_key_is_not_used(
    shared_models: Path, tmp_path: Path, conversions: list[int]
) -> None:
    one = TorchBackend(shared_models / MODEL, batch_size=1, cache_dir=tmp_path)
    two_path = TorchBackend(shared_models / MODEL, batch_size=2, cache_dir=tmp_path).artefact_path
    shutil.copyfile(one.artefact_path, two_path)
    with pytest.warns(CacheWarning, match="built for another"):
        two = TorchBackend(shared_models / MODEL, batch_size=2, cache_dir=tmp_path)
    assert not two.cache_hit and two.run(np.zeros((2, 3, 192, 192), np.float32))


def test_an_unwritable_cache_warns_and_the_model_still_loads(
    shared_models: Path, tmp_path: Path, conversions: list[int]
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.warns(CacheWarning, match="cannot write"):
        backend = TorchBackend(shared_models / MODEL, cache_dir=blocked / "torch")
    assert not backend.cache_hit and not backend.artefact_path.exists()


def test_store_replaces_atomically(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path)
    key = _key()
    path = cache.store(key, "model", lambda file: file.write_text("one"))
    assert cache.load(key, "model", Path.read_text) == "one"

    def fail(file: Path) -> None:
        file.write_text("half")
        raise OSError("disk full")

    with pytest.warns(CacheWarning, match="disk full"):
        cache.store(key, "model", fail)
    assert path.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    assert cache.load(_key(batch_size=2), "model", Path.read_text) is None
