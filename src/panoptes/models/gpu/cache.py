"""Artefacts built from a model, kept on disk between runs (DeepStream's ``model-engine-file``).

Converting an ONNX model for PyTorch and tracing it at a fixed batch takes seconds, compiling it
minutes; the result depends only on the model's bytes and on how it was built. So each artefact is
stored under a key of exactly that (the model's sha256, backend, precision, batch size, input
size, device, and the versions of the tools that built it) in the panoptes cache folder:
``$PANOPTES_CACHE_DIR``, else ``~/.cache/panoptes``. A file that cannot be read back is rebuilt
with a warning; a cache never stops a model from loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from panoptes.models.detector import ModelWarning

__all__ = ["ArtefactCache", "ArtefactKey", "CacheWarning", "cache_root", "file_sha256"]

T = TypeVar("T")

_CHUNK_BYTES = 1 << 20


class CacheWarning(ModelWarning):
    """A cached artefact could not be used (unreadable, or built for something else)."""


def cache_root() -> Path:
    """The panoptes cache folder: ``$PANOPTES_CACHE_DIR``, else ``~/.cache/panoptes``."""
    root = os.environ.get("PANOPTES_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "panoptes"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtefactKey:
    """Everything an artefact depends on. ``device`` names the device model, not its index
    (``cpu``, ``cuda NVIDIA H100 80GB HBM3 sm90``); ``tools`` are (name, version) pairs of what
    built it, the format of panoptes' own preparation included."""

    model_sha256: str
    backend: str
    precision: str
    batch_size: int
    input_size_wh: tuple[int, int]
    device: str
    tools: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The key as plain JSON values (stored beside the artefact, compared when loading)."""
        described = asdict(self)
        described["input_size_wh"] = list(self.input_size_wh)
        described["tools"] = {name: version for name, version in self.tools}
        return described

    def digest(self) -> str:
        """A short hex digest of the whole key, for file names."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


class ArtefactCache:
    """Files in ``folder`` (default ``cache_root() / "torch"``), one per key and kind.

    :meth:`load` gives None on a miss, and also when the file is unreadable: then it warns
    (:class:`CacheWarning`) and removes the file, so that the caller rebuilds and :meth:`store`
    writes it again. Writes go through a temporary file and a rename, so a crash mid-write leaves
    no half file under the artefact's name.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder if folder is not None else cache_root() / "torch"

    def path(self, key: ArtefactKey, stem: str, suffix: str = ".pt") -> Path:
        """Where the artefact of ``key`` lives; ``stem`` (the model's name) keeps it readable."""
        return self.folder / f"{stem}-{key.digest()}{suffix}"

    def load(
        self, key: ArtefactKey, stem: str, read: Callable[[Path], T], suffix: str = ".pt"
    ) -> T | None:
        """``read(path)`` of the stored artefact, or None when there is none or it is unusable.

        ``read`` raises on a file it cannot use; any exception counts as a corrupt file.
        """
        path = self.path(key, stem, suffix)
        if not path.is_file():
            return None
        try:
            return read(path)
        except Exception as error:  # a truncated pickle, a foreign file, a torch mismatch...
            warnings.warn(
                f"cached artefact {path} cannot be used ({type(error).__name__}: {error}); "
                "building it again",
                CacheWarning,
                stacklevel=2,
            )
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def store(
        self, key: ArtefactKey, stem: str, write: Callable[[Path], object], suffix: str = ".pt"
    ) -> Path:
        """Write the artefact of ``key`` with ``write(path)`` (a temporary path), then move it in
        place. A cache that cannot be written (read-only, full) is said with a warning."""
        path = self.path(key, stem, suffix)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.folder)
            os.close(handle)
            try:
                write(Path(temporary))
                os.replace(temporary, path)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        except OSError as error:
            warnings.warn(
                f"cannot write cached artefact {path} ({error}); the next start builds it again",
                CacheWarning,
                stacklevel=2,
            )
        return path
