"""RTP packets of H.264 (RFC 6184) and RTCP sender reports (RFC 3550).

Written here rather than taken from a library: no maintained Python package packetizes H.264 for
a server (PyAV's RTP muxer writes to a URL of its own, one per client, and exposes no RTCP), and
the format is a few dozen lines.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

RTP_VERSION = 2
#: The dynamic payload type the SDP maps to H264/90000.
PAYLOAD_TYPE = 96
CLOCK_RATE_HZ = 90_000
RTP_HEADER_BYTES = 12

# NAL unit type of a fragmentation unit A (RFC 6184, section 5.8).
_FU_A = 28
_FU_START = 0x80
_FU_END = 0x40

# RTCP packet types (RFC 3550, section 12.1) and the SDES item that names the sender.
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
_SDES_CNAME = 1

# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET_S = 2_208_988_800

_RTP_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True)
class RtpPayload:
    """The payload of one RTP packet of an access unit; ``last`` marks its last packet, which
    carries the marker bit (RFC 6184, section 5.1)."""

    data: bytes
    last: bool


def packetize(units: Sequence[bytes], max_payload_bytes: int) -> list[RtpPayload]:
    """RTP payloads of one access unit (its NAL units, without start codes), in order.

    A NAL unit that fits is sent alone (single NAL unit packet); a larger one is cut into FU-A
    fragments of at most ``max_payload_bytes`` (packetization-mode=1).
    """
    if max_payload_bytes < 3:
        raise ValueError(f"an RTP payload needs at least 3 bytes, not {max_payload_bytes}")
    payloads: list[RtpPayload] = []
    for unit in units:
        if len(unit) <= max_payload_bytes:
            payloads.append(RtpPayload(unit, last=False))
            continue
        indicator = (unit[0] & 0xE0) | _FU_A
        kind = unit[0] & 0x1F
        chunk_bytes = max_payload_bytes - 2
        body = unit[1:]
        for start in range(0, len(body), chunk_bytes):
            flags = (_FU_START if start == 0 else 0) | (
                _FU_END if start + chunk_bytes >= len(body) else 0
            )
            fragment = bytes((indicator, flags | kind)) + body[start : start + chunk_bytes]
            payloads.append(RtpPayload(fragment, last=False))
    if payloads:
        payloads[-1] = RtpPayload(payloads[-1].data, last=True)
    return payloads


def rtp_header(*, marker: bool, sequence: int, timestamp: int, ssrc: int) -> bytes:
    """A 12-byte RTP header: version 2, no padding, extension or CSRC, payload type 96."""
    return _RTP_HEADER.pack(
        RTP_VERSION << 6,
        (0x80 if marker else 0) | PAYLOAD_TYPE,
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def ntp_timestamp(unix_time_s: float) -> tuple[int, int]:
    """``(seconds, fraction)`` of a 64-bit NTP timestamp for a Unix time."""
    ntp_s = unix_time_s + NTP_UNIX_OFFSET_S
    seconds = int(ntp_s)
    fraction = int((ntp_s - seconds) * (1 << 32)) & 0xFFFFFFFF
    return seconds & 0xFFFFFFFF, fraction


def sender_report(
    *,
    ssrc: int,
    unix_time_s: float,
    rtp_timestamp: int,
    packets: int,
    octets: int,
    cname: str,
) -> bytes:
    """A compound RTCP packet: a sender report then an SDES with the CNAME, as RFC 3550
    (section 6.1) requires of every compound packet.

    Args:
        unix_time_s: wall-clock time the report stands for (``time.time()``).
        rtp_timestamp: the RTP timestamp of that same instant, which lets a receiver map RTP
            time to wall-clock time.
        packets: RTP packets sent so far in this session.
        octets: RTP payload bytes sent so far (headers not counted).
    """
    ntp_seconds, ntp_fraction = ntp_timestamp(unix_time_s)
    report = struct.pack(
        "!BBHIIIIII",
        RTP_VERSION << 6,
        RTCP_SR,
        6,  # length in 32-bit words, minus one
        ssrc,
        ntp_seconds,
        ntp_fraction,
        rtp_timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    name = cname.encode("utf-8")[:255]
    chunk = struct.pack("!IBB", ssrc, _SDES_CNAME, len(name)) + name
    # The item list ends with a zero byte, and the chunk is padded to a 32-bit boundary.
    chunk += b"\x00" * (4 - len(chunk) % 4)
    sdes = struct.pack("!BBH", (RTP_VERSION << 6) | 1, RTCP_SDES, len(chunk) // 4) + chunk
    return report + sdes


@dataclass(frozen=True)
class SenderReport:
    """What a receiver reads from an RTCP sender report."""

    ssrc: int
    ntp_seconds: int
    ntp_fraction: int
    rtp_timestamp: int
    packets: int
    octets: int

    @property
    def unix_time_s(self) -> float:
        return self.ntp_seconds - NTP_UNIX_OFFSET_S + self.ntp_fraction / (1 << 32)


def parse_rtcp(data: bytes) -> list[tuple[int, bytes]]:
    """``(packet type, packet)`` of each packet of a compound RTCP packet.

    Raises:
        ValueError: ``data`` is not a well-formed RTCP compound packet.
    """
    packets: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise ValueError(f"RTCP: {len(data) - offset} stray bytes at offset {offset}")
        first, kind, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTCP: version {first >> 6} at offset {offset}, expected 2")
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise ValueError(f"RTCP: a packet at offset {offset} runs past the end ({end} bytes)")
        packets.append((kind, data[offset:end]))
        offset = end
    return packets


def parse_sender_report(packet: bytes) -> SenderReport:
    """The fields of an RTCP SR packet (the first of a compound packet)."""
    if len(packet) < 28 or packet[1] != RTCP_SR:
        raise ValueError(f"not an RTCP sender report: {packet[:8].hex()}")
    ssrc, seconds, fraction, timestamp, count, octets = struct.unpack_from("!IIIIII", packet, 4)
    return SenderReport(ssrc, seconds, fraction, timestamp, count, octets)
