"""``panoptes validate``: everything ``run`` would check at start, without running."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from panoptes.config.loader import load_config
from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.core.errors import PanoptesError
from panoptes.core.registry import load_kind
from panoptes.media.reader import NETWORK_SCHEMES


def _reason(error: PanoptesError) -> str:
    return str(getattr(error, "reason", error))


def check_config(path: str | Path, overrides: Iterable[str] = ()) -> list[str]:
    """Problems found in the config at ``path``, each starting with its place; [] when valid.

    Schema errors raise :class:`ConfigError`. Local sources are opened (network ones are not
    contacted), models are loaded and sinks open their files, so a missing file, a wrong model
    or an unwritable output shows up here.
    """
    config, base_dir = load_config(path, overrides)
    problems: list[str] = []
    for index, props in enumerate(config.sources):
        place = f"sources[{index}].uri"
        try:
            source = load_kind(props.type)(props, base_dir=base_dir)
        except PanoptesError as error:
            problems.append(f"{place}: {_reason(error)}")
            continue
        if props.uri.partition("://")[0].lower() in NETWORK_SCHEMES:
            continue
        try:
            source.open()
        except PanoptesError as error:
            problems.append(f"{place}: {_reason(error)}")
        finally:
            source.close()
    bus = Bus()
    for index, infer in enumerate(config.infer):
        place = f"infer[{index}]"
        element: Any = load_kind("infer")(
            infer, name=place, context=BuildContext(bus, base_dir, place)
        )
        try:
            element.build()
        except PanoptesError as error:
            text = str(error)
            problems.append(text if text.startswith(place) else f"{place}: {text}")
        finally:
            element.close()
    # Sinks are not built: that would truncate the files they write.
    for index, sink in enumerate(config.sinks):
        output = getattr(sink, "path", None)
        if output and output != "-":
            problem = _unwritable(base_dir / output)
            if problem:
                problems.append(f"sinks[{index}].path: {problem}")
    return problems


def _unwritable(path: Path) -> str | None:
    """Why ``path`` could not be written, or None."""
    if path.is_dir():
        return f"{path} is a folder"
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder if not path.exists() else path, os.W_OK):
        return f"cannot write {path}: permission denied"
    return None
