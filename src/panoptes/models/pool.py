"""Several instances of one detector sharing each batch, one thread each.

onnxruntime's intra-op threads scale poorly on the small detectors this engine runs: yolox-nano on
this project's 2-core machine gave 56 fps with one thread, 60-64 with two threads in one session,
and 118-129 with two single-threaded sessions side by side. So a batch is split into contiguous
chunks, one per instance, run concurrently (onnxruntime, OpenCV and numpy release the GIL).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from panoptes.models.detector import Detector, DetectorResult
from panoptes.models.preprocess import PreprocessSpec


def _chunks(count: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices covering ``range(count)``, sizes differing by at most one."""
    bounds = np.linspace(0, count, min(parts, count) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


class DetectorPool:
    """``instances`` copies of ``Detector(model, **options)``; the same interface for one batch.

    Results come back in the order of the images. With one instance it is a plain Detector.
    """

    def __init__(self, model: str | Path, *, instances: int = 1, **options: Any) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        self._detectors: list[Detector] = []
        try:
            for _ in range(instances):
                self._detectors.append(Detector(model, **options))
        except BaseException:
            self.close()
            raise
        first = self._detectors[0]
        self.model_path: Path = first.model_path
        self.labels: list[str] = first.labels
        self.parser_name: str = first.parser_name
        self.preprocess: PreprocessSpec = first.preprocess
        self.input_size_wh: tuple[int, int] = first.input_size_wh
        self.batch_size: int | None = first.batch_size
        self._executor = (
            ThreadPoolExecutor(instances, thread_name_prefix="detector") if instances > 1 else None
        )

    @property
    def instances(self) -> int:
        return len(self._detectors)

    def label(self, class_id: int) -> str:
        return self._detectors[0].label(class_id)

    def detect(
        self, images: Sequence[np.ndarray], *, keep_tensors: bool = False
    ) -> list[DetectorResult]:
        """As :meth:`Detector.detect`, the images shared among the instances."""
        if self._executor is None or len(images) < 2:
            return self._detectors[0].detect(images, keep_tensors=keep_tensors)
        parts = _chunks(len(images), len(self._detectors))
        futures = [
            self._executor.submit(detector.detect, images[part], keep_tensors=keep_tensors)
            for detector, part in zip(self._detectors, parts, strict=False)
        ]
        return [result for future in futures for result in future.result()]

    def run_tensors(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model alone on an NCHW ``batch``, shared as :meth:`detect` shares images; each
        instance runs its share in chunks of the model's fixed batch size, if it has one."""
        if self._executor is None or len(batch) < 2:
            return self._run_share(self._detectors[0], batch)
        parts = _chunks(len(batch), len(self._detectors))
        futures = [
            self._executor.submit(self._run_share, detector, batch[part])
            for detector, part in zip(self._detectors, parts, strict=False)
        ]
        outputs = [future.result() for future in futures]
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}

    @staticmethod
    def _run_share(detector: Detector, batch: np.ndarray) -> dict[str, np.ndarray]:
        step = detector.batch_size or len(batch)
        outputs = [detector.run_tensors(batch[i : i + step]) for i in range(0, len(batch), step)]
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}

    def close(self) -> None:
        if getattr(self, "_executor", None) is not None:
            self._executor.shutdown()  # type: ignore[union-attr]
        for detector in self._detectors:
            detector.close()

    def __enter__(self) -> DetectorPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
