"""The model zoo: detectors known by name, found on disk or downloaded and checked once.

A zoo name (``yolox-nano``) is looked up by its file name in each folder of ``PANOPTES_MODEL_PATH``
(separated like ``PATH``), then in the user cache (``$PANOPTES_CACHE_DIR/models``, by default
``~/.cache/panoptes/models``). A model found nowhere is downloaded into the cache, its sha256
checked, unless ``PANOPTES_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from panoptes.core.errors import ModelError, ModelNotFoundError

__all__ = [
    "ZOO",
    "ModelEntry",
    "ResolvedModel",
    "cache_dir",
    "download",
    "find_local",
    "list_models",
    "pull",
    "resolve_model",
    "search_dirs",
]

_CHUNK_BYTES = 1 << 16
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelEntry:
    """A model the zoo can fetch: where from, its checksum, and how to read its outputs."""

    name: str
    filename: str
    url: str
    sha256: str
    parser: str
    license: str
    description: str = ""


#: Models known by name. Only permissively licensed models belong here.
ZOO: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="yolox-nano",
            filename="yolox_nano.onnx",
            url="https://raw.githubusercontent.com/Kazuhito00/YOLOX-ONNX-TFLite-Sample/"
            "0f785c070ce8da070aeaeef46c0da7904ff7012e/model/yolox_nano.onnx",
            sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            parser="yolox",
            license="Apache-2.0",
            description="YOLOX-Nano, COCO-80, 416×416 (Megvii's weights); the default detector",
        ),
        ModelEntry(
            name="fastestdet",
            filename="FastestDet.onnx",
            url="https://raw.githubusercontent.com/dog-qiuqiu/FastestDet/"
            "97df0a850c4949dcd7d9abf9c539679eee6b6a90/example/onnx-runtime/FastestDet.onnx",
            sha256="31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880",
            parser="fastestdet",
            license="BSD-3-Clause",
            description="FastestDet, COCO-80, 352×352; tiny and fast, weak on small objects",
        ),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model file on disk and, when it was named from the zoo, its entry."""

    path: Path
    entry: ModelEntry | None = None


def cache_dir() -> Path:
    """Where downloads go: ``$PANOPTES_CACHE_DIR/models``, else ``~/.cache/panoptes/models``."""
    root = os.environ.get("PANOPTES_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "panoptes"
    return base / "models"


def search_dirs() -> list[Path]:
    """The folders searched for zoo models, in order: ``PANOPTES_MODEL_PATH``, then the cache."""
    model_path = os.environ.get("PANOPTES_MODEL_PATH", "")
    folders = [Path(folder).expanduser() for folder in model_path.split(os.pathsep) if folder]
    return [*folders, cache_dir()]


def find_local(entry: ModelEntry) -> Path | None:
    """The first file named ``entry.filename`` in :func:`search_dirs`, or None."""
    for folder in search_dirs():
        candidate = folder / entry.filename
        if candidate.is_file():
            return candidate
    return None


def _offline() -> bool:
    return os.environ.get("PANOPTES_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _missing(entry: ModelEntry, reason: str) -> ModelNotFoundError:
    folders = "\n".join(f"  {folder}" for folder in search_dirs())
    return ModelNotFoundError(
        f"model {entry.name!r}: file {entry.filename} is missing and {reason}. Download it from "
        f"{entry.url} and put it in one of these folders (PANOPTES_MODEL_PATH, then the cache):\n"
        f"{folders}"
    )


def download(entry: ModelEntry, folder: Path | None = None) -> Path:
    """Download ``entry`` into ``folder`` (default :func:`cache_dir`), check its sha256, return it.

    The file is written under a temporary name and renamed into place only once its checksum
    matches, so an interrupted or corrupt download never looks like a model. A progress bar goes
    to stderr. Raises :class:`ModelNotFoundError` when offline or the URL cannot be fetched,
    :class:`ModelError` on a checksum mismatch.
    """
    from tqdm import tqdm

    if _offline():
        raise _missing(entry, "downloads are off (PANOPTES_OFFLINE is set)")
    folder = folder if folder is not None else cache_dir()
    target = folder / entry.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed at the end
            dir=folder, prefix=f".{entry.filename}.", suffix=".part", delete=False
        )
    except OSError as exc:
        raise ModelError(
            f"model {entry.name!r}: cannot write to the model cache {folder} ({exc}); point "
            "PANOPTES_CACHE_DIR at a writable folder"
        ) from exc
    partial = Path(handle.name)
    try:
        digest = hashlib.sha256()
        with handle, urllib.request.urlopen(entry.url, timeout=_TIMEOUT_S) as response:
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=entry.filename,
                file=sys.stderr,
                leave=False,
            ) as progress:
                while chunk := response.read(_CHUNK_BYTES):
                    handle.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
        if digest.hexdigest() != entry.sha256.lower():
            raise ModelError(
                f"model {entry.name!r}: the file downloaded from {entry.url} has sha256 "
                f"{digest.hexdigest()}, expected {entry.sha256}; it was not kept"
            )
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise _missing(entry, f"cannot be downloaded ({reason})") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _entry(name_or_entry: str | ModelEntry) -> ModelEntry:
    if isinstance(name_or_entry, ModelEntry):
        return name_or_entry
    try:
        return ZOO[name_or_entry]
    except KeyError:
        raise ModelNotFoundError(
            f"no model called {name_or_entry!r} in the zoo; known: {', '.join(sorted(ZOO))}"
        ) from None


def pull(name_or_entry: str | ModelEntry) -> Path:
    """The local file of a zoo model, downloaded first when no search folder has it."""
    entry = _entry(name_or_entry)
    return find_local(entry) or download(entry)


def list_models() -> list[tuple[ModelEntry, Path | None]]:
    """Every zoo entry with its local file, or None when it has not been downloaded."""
    return [(entry, find_local(entry)) for entry in ZOO.values()]


def resolve_model(name_or_path: str, *, base_dir: Path | None = None) -> ResolvedModel:
    """A model given as a file path (relative to ``base_dir``, else the working directory) or a
    zoo name; zoo models are found or downloaded as :func:`pull` does.

    Raises :class:`ModelNotFoundError` when it is neither an existing file nor a zoo name.
    """
    path = Path(name_or_path).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_file():
        return ResolvedModel(path)
    if path.exists():
        raise ModelError(f"model {path} is not a file")
    entry = ZOO.get(name_or_path)
    if entry is None:
        raise ModelNotFoundError(
            f"model {name_or_path!r}: no such file ({path}) and no zoo model of that name; "
            f"zoo models: {', '.join(sorted(ZOO))}"
        )
    return ResolvedModel(pull(entry), entry)
