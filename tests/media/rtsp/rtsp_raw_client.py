"""A bare RTSP client over a socket, for the tests that look at what the server sends byte by
byte: responses, SDP, RTP packets and RTCP reports, which FFmpeg and GStreamer do not expose."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from panoptes.media.rtsp._h264 import join_annexb, nal_type, split_annexb

TIMEOUT_S = 15.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers[name.lower()]


@dataclass
class RtpPacket:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    size: int

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        assert first >> 6 == 2, f"RTP version {first >> 6}"
        assert first & 0x3F == 0, "no padding, extension or CSRC expected"
        return cls(
            bool(second & 0x80), second & 0x7F, sequence, timestamp, ssrc, data[12:], len(data)
        )


@dataclass
class Depacketizer:
    """Reassembles access units from RTP packets of H.264 (single NAL units and FU-A)."""

    units: list[bytes] = field(default_factory=list)
    fragment: bytearray | None = None

    def add(self, packet: RtpPacket) -> bytes | None:
        """The access unit (Annex B) that ``packet`` completes, if it does."""
        payload = packet.payload
        if payload[0] & 0x1F == 28:  # FU-A
            header = payload[1]
            if header & 0x80:
                self.fragment = bytearray([(payload[0] & 0xE0) | (header & 0x1F)])
            assert self.fragment is not None, "an FU-A fragment without its start"
            self.fragment += payload[2:]
            if header & 0x40:
                self.units.append(bytes(self.fragment))
                self.fragment = None
        else:
            self.units.append(payload)
        if not packet.marker:
            return None
        access_unit, self.units = join_annexb(self.units), []
        return access_unit


class RawRtspClient:
    """One RTSP connection; requests go out one at a time, and interleaved packets that arrive
    before a response are kept in :attr:`interleaved`."""

    def __init__(self, url: str, *, receive_buffer_bytes: int | None = None) -> None:
        self.url = url
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer_bytes is not None:
            # Before connecting, so that the TCP window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        self.sock.settimeout(TIMEOUT_S)
        self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 554))
        self.cseq = 0
        self.session: str | None = None
        self.interleaved: list[tuple[int, bytes]] = []
        self._buffer = b""
        self._position = 0  # where the unread part of _buffer starts

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawRtspClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self, method: str, url: str | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        self.cseq += 1
        lines = [f"{method} {url or self.url} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.session is not None:
            lines.append(f"Session: {self.session}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.read_response()

    def read_response(self) -> Response:
        while True:
            message = self._read_message()
            if isinstance(message, Response):
                return message
            self.interleaved.append(message)

    def read_interleaved(self) -> tuple[int, bytes]:
        """The next interleaved packet: (channel, data)."""
        if self.interleaved:
            return self.interleaved.pop(0)
        message = self._read_message()
        assert not isinstance(message, Response), f"a response where RTP was expected: {message}"
        return message

    def setup_and_play(self, transport: str = "RTP/AVP/TCP;unicast;interleaved=0-1") -> Response:
        """DESCRIBE, SETUP and PLAY; returns the SETUP response."""
        described = self.request("DESCRIBE", headers={"Accept": "application/sdp"})
        assert described.status == 200, described
        base = described.header("Content-Base")
        setup = self.request("SETUP", base + "track0", {"Transport": transport})
        assert setup.status == 200, setup
        self.session = setup.header("Session").split(";")[0]
        self.play = self.request("PLAY", base)
        assert self.play.status == 200, self.play
        return setup

    def _recv(self, count: int) -> bytes:
        while len(self._buffer) - self._position < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer = self._buffer[self._position :] + chunk
            self._position = 0
        data = self._buffer[self._position : self._position + count]
        self._position += count
        return data

    def _read_message(self) -> Response | tuple[int, bytes]:
        first = self._recv(1)
        if first == b"$":
            channel, length = struct.unpack("!BH", self._recv(3))
            return channel, self._recv(length)
        head = first
        while not head.endswith(b"\r\n\r\n"):
            head += self._recv(1)
            assert len(head) < 65536, f"no end to a response head: {head[:200]!r}"
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = self._recv(int(headers.get("content-length", "0")))
        return Response(status, headers, body)


def nal_types(access_unit: bytes) -> list[int]:
    """The nal_unit_type of each NAL unit of an Annex B access unit."""
    return [nal_type(unit) for unit in split_annexb(access_unit)]
