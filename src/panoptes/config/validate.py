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
from panoptes.core.imports import load_function
from panoptes.core.registry import load_kind
from panoptes.media.reader import NETWORK_SCHEMES


def _reason(error: PanoptesError) -> str:
    return str(getattr(error, "reason", error))


def check_config(
    path: str | Path, overrides: Iterable[str] = (), *, translations: list[Any] | None = None
) -> list[str]:
    """Problems found in the config at ``path``, each starting with its place; [] when valid.

    Schema errors raise :class:`ConfigError`. Local sources are opened (network ones are not
    contacted), models are loaded, every element is built (sinks check their outputs without
    writing them) and probes are imported, so a missing file, a wrong model, an unwritable
    output or a probe that cannot be imported shows up here.
    """
    config, base_dir = load_config(path, overrides, translations=translations)
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
    elements: list[tuple[str, Any, str, dict[str, Any]]] = [
        ("infer", infer, f"infer[{index}]", {}) for index, infer in enumerate(config.infer)
    ]
    elements += [
        (key, getattr(config, key), key, {})
        for key in ("tracker", "analytics", "tiler", "osd")
        if getattr(config, key) is not None
    ]
    for index, sink in enumerate(config.sinks):
        # A sink that would truncate its file when built (jsonl) is only checked for a
        # writable path; the others check their own outputs without writing them.
        if getattr(load_kind(sink.type), "build_truncates", False):
            output = getattr(sink, "path", None)
            problem = _unwritable(base_dir / output) if output and output != "-" else None
            if problem:
                problems.append(f"sinks[{index}].path: {problem}")
            continue
        elements.append((sink.type, sink, f"sinks[{index}]", {}))
    for kind, props, place, extra in elements:
        element: Any = load_kind(kind)(
            props, name=place, context=BuildContext(bus, base_dir, place, config), **extra
        )
        try:
            element.build()
        except PanoptesError as error:
            text = str(error)
            problems.append(text if text.startswith(place) else f"{place}: {text}")
        finally:
            element.close()
    names = {"mux"}
    names |= {
        getattr(config, key).name or key
        for key in ("tracker", "analytics", "tiler", "osd")
        if getattr(config, key) is not None
    }
    names |= {infer.name or f"infer{index}" for index, infer in enumerate(config.infer)}
    names |= {sink.name or f"{sink.type}{index}" for index, sink in enumerate(config.sinks)}
    for index, probe in enumerate(config.probes):
        if probe.element not in names:
            problems.append(
                f"probes[{index}].element: no element named {probe.element!r}; "
                f"elements: {', '.join(sorted(names))}"
            )
        try:
            load_function(probe.function, base_dir)
        except ImportError as error:
            problems.append(f"probes[{index}].function: {error}")
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
