"""Image folders and globs, read as a video with one image per frame."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from panoptes.core.errors import SourceError
from panoptes.media._base import BaseReader, ImageMaker

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

#: Images tried at open to learn the frame size before giving up on a folder of broken files.
MAX_PROBED_IMAGES = 10


class ImageSequenceReader(BaseReader):
    """Reads the images of a folder, of a glob pattern, or one image, sorted by file name.

    Each image is one frame at ``fps`` frames per second (pts = decoded index / fps). Images
    keep their own size; ``size_wh`` is the first readable image's. An unreadable image is
    counted in ``corrupt_frames`` and skipped.

    Args:
        folder: a folder whose images (jpg, jpeg, png, bmp, webp) are read; or
        pattern: a glob pattern (``/x/*.jpg``); or
        image: one image file.
    """

    def __init__(
        self,
        uri: str,
        name: str,
        *,
        folder: Path | None = None,
        pattern: str | None = None,
        image: Path | None = None,
        fps: float,
        loop: bool,
        real_time: bool,
        drop_frame_interval: int,
    ) -> None:
        super().__init__(
            uri, name, loop=loop, real_time=real_time, drop_frame_interval=drop_frame_interval
        )
        self._folder, self._pattern, self._image = folder, pattern, image
        self._paths: list[Path] = []
        self._native_fps = fps

    def _open(self) -> None:
        self._paths = self._list_images()
        for path in self._paths[:MAX_PROBED_IMAGES]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self.size_wh = (image.shape[1], image.shape[0])
                break
        else:
            raise SourceError(
                f"cannot read any of the first {min(len(self._paths), MAX_PROBED_IMAGES)} "
                f"images (first: {self._paths[0]})",
                source=self.name,
            )
        self._native_frame_count = len(self._paths)

    def _list_images(self) -> list[Path]:
        if self._image is not None:
            if not self._image.is_file():
                raise SourceError(f"no such file: {self._image}", source=self.name)
            return [self._image]
        if self._folder is not None:
            if not self._folder.exists():
                raise SourceError(f"no such file or folder: {self._folder}", source=self.name)
            paths = sorted(
                path
                for path in self._folder.iterdir()
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
            )
            if not paths:
                raise SourceError(
                    f"the folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                    f"{self._folder}",
                    source=self.name,
                )
            return paths
        assert self._pattern is not None
        paths = sorted(
            Path(match)
            for match in glob.glob(self._pattern)
            if Path(match).suffix.lower() in IMAGE_SUFFIXES and Path(match).is_file()
        )
        if not paths:
            raise SourceError(f"no image matches {self._pattern}", source=self.name)
        return paths

    def _decode_pass(self) -> Iterator[tuple[float | None, ImageMaker]]:
        assert self._native_fps is not None
        for position, path in enumerate(self._paths):
            yield position / self._native_fps, _image_maker(path)

    def _rewind(self) -> None:
        pass


def _image_maker(path: Path) -> ImageMaker:
    def read() -> np.ndarray | None:
        image: np.ndarray | None = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return image

    return read
