"""Several detector instances sharing a batch give exactly what one instance gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from panoptes.models.detector import Detector
from panoptes.models.pool import DetectorPool, _chunks
from panoptes.models.preprocess import preprocess_batch


@pytest.mark.parametrize(("count", "parts"), [(4, 2), (5, 2), (3, 4), (1, 3), (7, 3)])
def test_chunks_cover_everything_in_order(count: int, parts: int) -> None:
    slices = _chunks(count, parts)
    covered = [i for part in slices for i in range(count)[part]]
    assert covered == list(range(count))
    sizes = [len(range(count)[part]) for part in slices]
    assert len(slices) == min(count, parts) and max(sizes) - min(sizes) <= 1


def test_pool_matches_one_detector(
    models_dir: Path, astronaut: np.ndarray, chelsea: np.ndarray
) -> None:
    images = [astronaut, chelsea, astronaut[:, ::-1].copy(), chelsea[::-1].copy(), astronaut]
    model = models_dir / "yolox_nano.onnx"
    with Detector(model, threads=1) as single, DetectorPool(model, instances=2, threads=1) as pool:
        assert pool.instances == 2 and pool.labels == single.labels
        expected = single.detect(images, keep_tensors=True)
        got = pool.detect(images, keep_tensors=True)
        assert len(got) == len(images)
        for one, many in zip(expected, got, strict=True):
            np.testing.assert_allclose(many.detections.xyxy, one.detections.xyxy, atol=1e-3)
            np.testing.assert_array_equal(many.detections.class_id, one.detections.class_id)
            assert many.tensors is not None and one.tensors is not None
            np.testing.assert_allclose(many.tensors["output"], one.tensors["output"], atol=1e-4)
        batch, _ = preprocess_batch(images, pool.preprocess)
        np.testing.assert_allclose(
            pool.run_tensors(batch)["output"],
            np.concatenate([single.run_tensors(batch[i : i + 1])["output"] for i in range(5)]),
            atol=1e-4,
        )
    assert got[1].detections.class_id.tolist().count(15) >= 1  # the cat in chelsea


def test_pool_on_a_dynamic_batch_model(mean_model: Callable[..., Path]) -> None:
    path = mean_model()
    images = [np.full((64, 64, 3), value, np.uint8) for value in (10, 20, 30, 40)]
    with DetectorPool(path, instances=3, threshold=0.0, parser="end2end") as pool:
        assert pool.batch_size is None
        scores = [r.detections.confidence.tolist() for r in pool.detect(images)]
    assert len(scores) == 4 and all(len(s) == 1 for s in scores)
    flat = [s[0] for s in scores]  # each score is its image's mean: the order must survive
    assert flat == sorted(flat) and len(set(flat)) == 4


def test_pool_refuses_zero_instances(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DetectorPool(models_dir / "yolox_nano.onnx", instances=0)
