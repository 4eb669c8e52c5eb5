"""Several instances of one detector sharing the work, one thread each.

onnxruntime's intra-op threads scale poorly on the small detectors this engine runs: yolox-nano on
this project's 2-core machine gave 56 fps with one thread, 60-64 with two threads in one session,
and 118-129 with two single-threaded sessions side by side. So each instance gets a thread of its
own, and the images of a batch are handed out as tasks: one image per task for models with a fixed
batch of one (a free instance takes the next image, so no instance waits for another), a share of
the batch per instance otherwise. onnxruntime, OpenCV and numpy release the GIL.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from panoptes.models.detector import Detector, DetectorResult
from panoptes.models.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from panoptes.models.gpu.preprocess import ImageLayout

_STOP = object()


def _chunks(count: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices covering ``range(count)``, sizes differing by at most one."""
    bounds = np.linspace(0, count, min(parts, count) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


Task = Callable[[Detector], Any]

INFERENCE_NICENESS = 5


def _yield_to_decoders() -> None:
    """Lower this thread's priority a little, so that decoders win the cores when both want them.

    Every batch waits for one frame of each stream: a decoder starved by the model threads (a
    1080p HEVC stream needs 10 ms of CPU a frame) holds up the whole pipeline, while the model
    loses nothing by waiting for the decoders, which back-pressure bounds. Linux only: elsewhere,
    or without permission, nothing changes.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)


class DetectorPool:
    """``instances`` copies of ``Detector(model, **options)`` behind the Detector interface.

    :meth:`submit` queues a batch and returns at once; :meth:`detect` waits for it. Results come
    back in the order of the images. With one instance the work runs in the caller's thread.
    """

    def __init__(self, model: str | Path, *, instances: int = 1, **options: Any) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        self._detectors: list[Detector] = []
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
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
        if instances > 1:
            for index, detector in enumerate(self._detectors):
                worker = threading.Thread(
                    target=self._work, args=(detector,), name=f"detector-{index}", daemon=True
                )
                worker.start()
                self._workers.append(worker)

    @property
    def instances(self) -> int:
        return len(self._detectors)

    def label(self, class_id: int) -> str:
        return self._detectors[0].label(class_id)

    def _work(self, detector: Detector) -> None:
        _yield_to_decoders()
        while (item := self._tasks.get()) is not _STOP:
            task, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(task(detector))
            except BaseException as error:
                future.set_exception(error)

    def _parts(self, count: int) -> list[slice]:
        if self.batch_size == 1:
            return [slice(i, i + 1) for i in range(count)]
        return _chunks(count, len(self._detectors))

    def _spread(self, count: int, task_for: Callable[[slice], Task]) -> list[Future[Any]]:
        futures: list[Future[Any]] = []
        for part in self._parts(count):
            future: Future[Any] = Future()
            self._tasks.put((task_for(part), future))
            futures.append(future)
        return futures

    @property
    def takes_tensors(self) -> bool:
        """As :attr:`Detector.takes_tensors`."""
        return self._detectors[0].takes_tensors

    def submit(
        self,
        images: Sequence[Any],
        *,
        keep_tensors: bool = False,
        layout: ImageLayout = "hwc-bgr",
    ) -> Callable[[], list[DetectorResult]]:
        """Queue ``images`` for detection (see :meth:`Detector.detect` for ``layout``); call the
        returned function for the results."""
        if not self._workers:
            results = self._detectors[0].detect(images, keep_tensors=keep_tensors, layout=layout)
            return lambda: results
        futures = self._spread(
            len(images),
            lambda part: (
                lambda detector: detector.detect(
                    images[part], keep_tensors=keep_tensors, layout=layout
                )
            ),
        )
        return lambda: [result for future in futures for result in future.result()]

    def detect(
        self,
        images: Sequence[Any],
        *,
        keep_tensors: bool = False,
        layout: ImageLayout = "hwc-bgr",
    ) -> list[DetectorResult]:
        """As :meth:`Detector.detect`, the images shared among the instances."""
        return self.submit(images, keep_tensors=keep_tensors, layout=layout)()

    def run_tensors(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model alone on an NCHW ``batch``, shared as :meth:`detect` shares images; each
        task runs in chunks of the model's fixed batch size, if it has one."""
        if not self._workers:
            return self._run_share(self._detectors[0], batch)
        futures = self._spread(
            len(batch), lambda part: lambda detector: self._run_share(detector, batch[part])
        )
        outputs = [future.result() for future in futures]
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}

    @staticmethod
    def _run_share(detector: Detector, batch: np.ndarray) -> dict[str, np.ndarray]:
        step = detector.batch_size or len(batch)
        outputs = [detector.run_tensors(batch[i : i + step]) for i in range(0, len(batch), step)]
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}

    def close(self) -> None:
        for _ in self._workers:
            self._tasks.put(_STOP)
        for worker in self._workers:
            worker.join()
        self._workers = []
        for detector in self._detectors:
            detector.close()

    def __enter__(self) -> DetectorPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
