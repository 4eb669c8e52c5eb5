"""``panoptes validate``: everything ``run`` would check at start, without running."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from panoptes.config.loader import load_config
from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.core.errors import PanoptesError
from panoptes.core.registry import load_kind

_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def check_config(path: str | Path, overrides: Iterable[str] = ()) -> list[str]:
    """Problems found in the config at ``path``, each starting with its place; [] when valid.

    Schema errors raise :class:`ConfigError`. Local sources are opened (network ones are not
    contacted) and models are loaded, so a missing file or a wrong model shows up here.
    """
    config, base_dir = load_config(path, overrides)
    problems: list[str] = []
    for index, props in enumerate(config.sources):
        uri = props.uri
        if uri.startswith(_NETWORK_SCHEMES):
            continue
        source = load_kind(props.type)(props, base_dir=base_dir)
        try:
            source.open()
        except PanoptesError as error:
            problems.append(f"sources[{index}].uri: {getattr(error, 'reason', error)}")
        finally:
            source.close()
    bus = Bus()
    for index, infer in enumerate(config.infer):
        place = f"infer[{index}]"
        element = load_kind("infer")(
            infer, name=infer.name or f"infer{index}", context=BuildContext(bus, base_dir, place)
        )
        try:
            element.build()
        except PanoptesError as error:
            problems.append(f"{place}.model: {error}")
        finally:
            element.close()
    return problems
