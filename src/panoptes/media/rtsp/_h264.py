"""H.264 Annex B byte streams: NAL units, parameter sets and what an SDP says about them."""

from __future__ import annotations

import base64
from collections.abc import Sequence

# nal_unit_type values (ITU-T H.264, table 7-1) that the server looks at.
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x01"
_LONG_START_CODE = b"\x00\x00\x00\x01"


def is_annexb(data: bytes) -> bool:
    """Whether ``data`` begins with an Annex B start code (``00 00 01`` or ``00 00 00 01``)."""
    return data.startswith(START_CODE) or data.startswith(_LONG_START_CODE)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without their start codes.

    Zero bytes before a start code are the stream's ``trailing_zero_8bits`` (or the first byte of
    a four-byte start code), never part of a NAL unit, whose last byte holds its stop bit.
    """
    units: list[bytes] = []
    start = data.find(START_CODE)
    while start != -1:
        begin = start + len(START_CODE)
        end = data.find(START_CODE, begin)
        unit = data[begin:] if end == -1 else data[begin:end]
        unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
        start = end
    return units


def nal_type(unit: bytes) -> int:
    """The nal_unit_type of a NAL unit (its first byte's low five bits)."""
    return unit[0] & 0x1F


def join_annexb(units: Sequence[bytes]) -> bytes:
    """NAL units as an Annex B byte stream, each after a four-byte start code."""
    return b"".join(_LONG_START_CODE + unit for unit in units)


def profile_level_id(sps: bytes) -> str:
    """The SDP ``profile-level-id`` of an SPS NAL unit: profile_idc, constraint flags and
    level_idc as six hex digits (RFC 6184, section 8.1), e.g. ``"42e01f"``."""
    if len(sps) < 4:
        raise ValueError(f"an SPS has at least 4 bytes, this one {len(sps)}: {sps.hex()}")
    return sps[1:4].hex()


def sprop_parameter_sets(sps: bytes, pps: bytes) -> str:
    """The SDP ``sprop-parameter-sets``: base64 of the SPS and the PPS, comma separated."""
    return ",".join(base64.b64encode(unit).decode("ascii") for unit in (sps, pps))


def with_parameter_sets(units: list[bytes], sps: bytes, pps: bytes) -> list[bytes]:
    """``units`` with ``sps`` and ``pps`` put before the first one that is not an access unit
    delimiter, where a decoder looks for them (an AUD, when present, must stay first)."""
    at = 0
    while at < len(units) and nal_type(units[at]) == NAL_AUD:
        at += 1
    return [*units[:at], sps, pps, *units[at:]]
