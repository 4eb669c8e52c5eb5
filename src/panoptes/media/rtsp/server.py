"""The RTSP server: paths (mounts) that H.264 access units are pushed into, streamed to every
client that plays them over RTP, interleaved on the RTSP connection (TCP) or over UDP.

One background thread runs an asyncio loop that does all the network work; :meth:`H264Mount.push`
only queues the access unit and wakes the loop, so a producer never waits on a client. Each client
has a bounded send buffer: a client that cannot keep up loses frames (it resumes at the next key
frame, so its decoder never sees a broken reference chain), and one whose buffer stays full for
``stall_timeout_s`` is disconnected. Nothing a client does blocks the producer or other clients.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from panoptes.core.errors import PanoptesError
from panoptes.media.rtsp._h264 import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    is_annexb,
    nal_type,
    profile_level_id,
    split_annexb,
    sprop_parameter_sets,
    with_parameter_sets,
)
from panoptes.media.rtsp._messages import (
    BadRequest,
    Request,
    TransportSpec,
    format_response,
    parse_head,
    parse_transports,
)
from panoptes.media.rtsp._rtp import (
    CLOCK_RATE_HZ,
    PAYLOAD_TYPE,
    RTP_HEADER_BYTES,
    RtpPayload,
    packetize,
    rtp_header,
    sender_report,
)

__all__ = ["H264Mount", "RtspServer", "RtspServerError", "shared_server"]

DEFAULT_PORT = 8554
#: Seconds without a request or RTCP report after which a UDP session ends (RFC 2326's default).
SESSION_TIMEOUT_S = 60.0
#: Seconds a client's send buffer may stay full before the client is disconnected.
STALL_TIMEOUT_S = 10.0
#: Bytes queued for one client beyond which its frames are dropped: about 1 s of 1080p video at
#: a high bitrate; queueing more only adds latency to a client that is not keeping up.
MAX_CLIENT_BUFFER_BYTES = 2 * 1024 * 1024
#: Largest RTP packet (header included): below the 1500-byte Ethernet MTU with room for the IP,
#: UDP and tunnel headers (VPNs, VXLAN) a packet may pick up on its way.
MAX_PACKET_BYTES = 1400
#: Seconds between two RTCP sender reports to a client (the first goes out with its first frame).
SENDER_REPORT_INTERVAL_S = 5.0
#: Seconds DESCRIBE waits for the first key frame, whose SPS and PPS the SDP carries.
DESCRIBE_WAIT_S = 5.0
#: Access units pushed but not yet taken by the server thread, beyond which a push drops its
#: frame (and the frames up to the next key frame): the thread is starved of CPU.
MAX_PENDING_FRAMES = 60
#: The kernel's send buffer for a TCP client. Left to autotuning it grows to 4 MiB, seconds of
#: video that can no longer be dropped when the client falls behind.
SOCKET_SEND_BUFFER_BYTES = 512 * 1024
#: Longest request head (request line and headers) or body accepted.
MAX_REQUEST_BYTES = 64 * 1024
#: The control URL of the one track of a path, relative to the path (``/cam/track0``).
TRACK = "track0"
#: UDP sends refused in a row (the client's ports closed: it went away) that end a session.
MAX_REFUSED_SENDS = 10

PUBLIC_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"

_HOUSEKEEPING_INTERVAL_S = 0.25
_STOP_TIMEOUT_S = 5.0
_MAX_ERRORS_KEPT = 100
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class RtspServerError(PanoptesError, OSError):
    """The RTSP server cannot listen where asked, or cannot serve a client."""


@dataclass(frozen=True)
class _AccessUnit:
    data: bytes
    pts_s: float
    keyframe: bool
    capture_time_s: float | None


class H264Mount:
    """One path of an :class:`RtspServer`, streaming the H.264 pushed into it to its clients.

    Made by :meth:`RtspServer.mount`. Attributes:
        path: the path, e.g. ``"/cam1"``.
        on_sent: ``callback(capture_time_s, sent_time_s)``, called in the server thread once the
            last RTP packet of a frame pushed with ``capture_time_s`` has been handed to at least
            one client's socket (``sent_time_s`` is ``time.time()``); keep it quick. An exception
            it raises is counted in :attr:`callback_errors` and kept in the server's ``errors``.
        frames_pushed: access units accepted by :meth:`push`.
        frames_dropped: access units :meth:`push` dropped because the server thread was behind.
        client_frames_dropped: frames not sent to a client that was not keeping up, summed over
            clients.
        callback_errors: exceptions raised by :attr:`on_sent`.
    """

    def __init__(self, server: RtspServer, path: str) -> None:
        self.path = path
        self.on_sent: Callable[[float, float], None] | None = None
        self.frames_pushed = 0
        self.frames_dropped = 0
        self.client_frames_dropped = 0
        self.callback_errors = 0
        self._server = server
        self._lock = threading.Lock()
        self._pending: deque[_AccessUnit] = deque()
        self._wake_scheduled = False
        self._skip_until_keyframe = False
        self._closed_because: str | None = None  # why pushing is refused, once it is
        # The rest belongs to the server thread.
        self._playing: set[_Session] = set()
        self._clients = 0
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._sdp_id = secrets.randbits(32)
        self._sdp_version = 0
        self._parameter_sets_known = asyncio.Event()
        self._latest_pts_s = 0.0

    @property
    def clients(self) -> int:
        """Clients playing this path now."""
        return self._clients

    def push(
        self,
        access_unit: bytes,
        *,
        pts_s: float,
        keyframe: bool,
        capture_time_s: float | None = None,
    ) -> None:
        """Queue one frame for every client of this path; returns at once, never blocks.

        Args:
            access_unit: one frame of H.264 in Annex B format (NAL units after start codes).
                SPS and PPS may come in band; when a key frame lacks them, the last ones seen
                are sent before it.
            pts_s: presentation time in seconds; increasing from frame to frame (B-frames aside),
                it sets the RTP timestamps (90 kHz).
            keyframe: whether the frame is an IDR frame, where a new client can start.
            capture_time_s: ``time.time()`` when the frame was captured, passed to
                :attr:`on_sent`; ``None`` if not measured.

        Raises:
            TypeError: ``access_unit`` is not bytes.
            ValueError: ``access_unit`` does not start with an Annex B start code.
            RuntimeError: the path was unmounted, or the server stopped or never started.
        """
        if not isinstance(access_unit, bytes | bytearray | memoryview):
            raise TypeError(
                f"{self.path}: an access unit is bytes, not {type(access_unit).__name__}"
            )
        data = bytes(access_unit)
        if not is_annexb(data):
            raise ValueError(
                f"{self.path}: an access unit must be H.264 in Annex B format, starting with a "
                f"start code (00 00 01 or 00 00 00 01); it starts with {data[:4].hex(' ')!r}"
            )
        loop = self._server._loop
        with self._lock:
            if self._closed_because is not None or loop is None:
                why = self._closed_because or "the server is not started"
                raise RuntimeError(f"cannot push to {self.path}: {why}")
            if len(self._pending) >= MAX_PENDING_FRAMES or (
                self._skip_until_keyframe and not keyframe
            ):
                # Frames after a dropped one would reference it: skip to the next key frame.
                self._skip_until_keyframe = True
                self.frames_dropped += 1
                return
            self._skip_until_keyframe = False
            self._pending.append(_AccessUnit(data, pts_s, keyframe, capture_time_s))
            self.frames_pushed += 1
            wake = not self._wake_scheduled
            self._wake_scheduled = True
        if wake:
            try:
                loop.call_soon_threadsafe(self._deliver_pending)
            except RuntimeError:  # the loop closed between the check and here: stop() ran
                raise RuntimeError(f"cannot push to {self.path}: the server stopped") from None

    # Everything below runs in the server thread.

    def _close(self, why: str) -> None:
        with self._lock:
            self._closed_because = why
            self._pending.clear()

    def _deliver_pending(self) -> None:
        with self._lock:
            units = list(self._pending)
            self._pending.clear()
            self._wake_scheduled = False
        for unit in units:
            self._deliver(unit)

    def _deliver(self, unit: _AccessUnit) -> None:
        self._latest_pts_s = unit.pts_s
        if not self._playing and not unit.keyframe:
            return  # only key frames bring parameter sets for the SDP
        nal_units = split_annexb(unit.data)
        sps = pps = None
        has_idr = False
        for nal in nal_units:
            kind = nal_type(nal)
            if kind == NAL_SPS:
                sps = nal
            elif kind == NAL_PPS:
                pps = nal
            elif kind == NAL_IDR:
                has_idr = True
        if sps is not None and pps is not None and (sps, pps) != (self._sps, self._pps):
            self._sps, self._pps = sps, pps
            self._sdp_version += 1
            self._parameter_sets_known.set()
        keyframe = unit.keyframe or has_idr
        if keyframe and (sps is None or pps is None) and self._sps and self._pps:
            nal_units = with_parameter_sets(nal_units, self._sps, self._pps)
        if not self._playing or not nal_units:
            return
        payloads = packetize(nal_units, self._server.max_packet_bytes - RTP_HEADER_BYTES)
        sent = False
        for session in list(self._playing):
            sent = session.send_access_unit(payloads, unit.pts_s, keyframe) or sent
        if sent and unit.capture_time_s is not None and self.on_sent is not None:
            try:
                self.on_sent(unit.capture_time_s, time.time())
            except Exception as exc:
                self.callback_errors += 1
                self._server._note_error(f"{self.path}: on_sent raised {exc!r}")

    def _add_player(self, session: _Session) -> None:
        self._playing.add(session)
        self._clients = len(self._playing)

    def _remove_player(self, session: _Session) -> None:
        self._playing.discard(session)
        self._clients = len(self._playing)

    async def _wait_for_parameter_sets(self, timeout_s: float) -> None:
        # Past the timeout the SDP goes out without them: clients take them in band.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._parameter_sets_known.wait(), timeout_s)

    def _sdp(self, local_host: str) -> bytes:
        """The session description of this path (RFC 4566, RFC 6184 section 8.2)."""
        local_host = local_host.removeprefix("::ffff:")
        family = "IP6" if ":" in local_host else "IP4"
        fmtp = "packetization-mode=1"
        if self._sps is not None and self._pps is not None:
            fmtp += (
                f";profile-level-id={profile_level_id(self._sps)}"
                f";sprop-parameter-sets={sprop_parameter_sets(self._sps, self._pps)}"
            )
        lines = [
            "v=0",
            f"o=- {self._sdp_id} {self._sdp_version} IN {family} {local_host}",
            f"s=panoptes {self.path}",
            f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
            "t=0 0",
            "a=tool:panoptes",
            "a=type:broadcast",
            "a=control:*",
            f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
            f"a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE_HZ}",
            f"a=fmtp:{PAYLOAD_TYPE} {fmtp}",
            f"a=control:{TRACK}",
        ]
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    def __repr__(self) -> str:
        return f"<H264Mount {self.path!r}, {self._clients} clients>"


class _RtpTransport(Protocol):
    """Where a session's RTP and RTCP packets go."""

    @property
    def closing(self) -> bool: ...

    def buffered_bytes(self) -> int: ...

    def send_rtp(self, packets: list[bytes]) -> None: ...

    def send_rtcp(self, packet: bytes) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str:
        """The Transport header of the SETUP response, without ``ssrc`` and ``mode``."""
        ...


class _Connection:
    """An RTSP connection from a client; TCP-interleaved RTP goes out on it too."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.transport = writer.transport
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
        self.peer_host: str = peer[0]
        self.local_host: str = local[0]
        self.name = f"{peer[0]}:{peer[1]}"
        self.sessions: set[_Session] = set()
        self.last_activity_s = time.monotonic()

    @property
    def closing(self) -> bool:
        return self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def buffered_bytes(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self) -> None:
        """Close at once, dropping what is queued: the client is gone or not reading."""
        self.transport.abort()

    def channels_in_use(self) -> set[int]:
        return {
            channel
            for session in self.sessions
            if isinstance(session.transport, _InterleavedTransport)
            for channel in session.transport.channels
        }


class _InterleavedTransport:
    """RTP and RTCP framed on the RTSP connection (RFC 2326, section 10.12)."""

    def __init__(self, connection: _Connection, channels: tuple[int, int]) -> None:
        self.connection = connection
        self.channels = channels
        self._rtp_prefix = bytes((0x24, channels[0]))
        self._rtcp_prefix = bytes((0x24, channels[1]))

    @property
    def closing(self) -> bool:
        return self.connection.closing

    def buffered_bytes(self) -> int:
        return self.connection.buffered_bytes()

    def send_rtp(self, packets: list[bytes]) -> None:
        # One write per frame: fewer system calls, and RTSP responses can only fall between
        # whole frames.
        prefix = self._rtp_prefix
        self.connection.write(
            b"".join(prefix + len(packet).to_bytes(2, "big") + packet for packet in packets)
        )

    def send_rtcp(self, packet: bytes) -> None:
        self.connection.write(self._rtcp_prefix + len(packet).to_bytes(2, "big") + packet)

    def close(self) -> None:
        pass  # the connection stays: the client may set up another session on it

    def describe(self) -> str:
        return f"RTP/AVP/TCP;unicast;interleaved={self.channels[0]}-{self.channels[1]}"


class _UdpReceiver(asyncio.DatagramProtocol):
    """Takes what a client sends to a session's UDP ports: RTCP receiver reports, which keep the
    session alive, and port-opening packets, ignored; counts refused sends (ICMP port
    unreachable on the connected socket), which mean the client went away."""

    def __init__(self, session: _Session, *, is_rtcp: bool) -> None:
        self.session = session
        self.is_rtcp = is_rtcp

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.is_rtcp:
            self.session.touch()

    def error_received(self, exc: Exception) -> None:
        self.session.note_send_error(exc)


class _UdpTransport:
    """RTP and RTCP over a pair of UDP sockets connected to the client's ports."""

    def __init__(
        self,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        client_ports: tuple[int, int],
        server_ports: tuple[int, int],
    ) -> None:
        self.rtp, self.rtcp = rtp, rtcp
        self.client_ports, self.server_ports = client_ports, server_ports

    @property
    def closing(self) -> bool:
        return self.rtp.is_closing()

    def buffered_bytes(self) -> int:
        # asyncio's datagram transports have it, typeshed's DatagramTransport does not.
        size: int = self.rtp.get_write_buffer_size()  # type: ignore[attr-defined]
        return size

    def send_rtp(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.rtp.sendto(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.sendto(packet)

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()

    def describe(self) -> str:
        client, server = self.client_ports, self.server_ports
        return (
            f"RTP/AVP;unicast;client_port={client[0]}-{client[1]}"
            f";server_port={server[0]}-{server[1]}"
        )


class _Session:
    """An RTSP session: one client of one path, with its own SSRC, sequence numbers and clock
    offset (random, as RFC 3550 asks)."""

    def __init__(
        self, server: RtspServer, session_id: str, mount: H264Mount, connection: _Connection
    ) -> None:
        self.server = server
        self.id = session_id
        self.mount = mount
        self.connection = connection
        self.url = ""
        self.transport: _RtpTransport | None = None
        self.playing = False
        self.closed = False
        self.ssrc = secrets.randbits(32)
        self.sequence = secrets.randbits(16)
        self.timestamp_offset = secrets.randbits(32)
        self.packets_sent = 0
        self.octets_sent = 0
        self.waiting_for_keyframe = True
        self.last_activity_s = time.monotonic()
        self.stalled_since_s: float | None = None
        self.next_report_s: float | None = None
        self.latest_pts_s: float | None = None
        self.latest_sent_s = 0.0
        self.refused_sends = 0

    @property
    def interleaved(self) -> bool:
        return isinstance(self.transport, _InterleavedTransport)

    def touch(self) -> None:
        self.last_activity_s = time.monotonic()
        self.refused_sends = 0

    def rtp_timestamp(self, pts_s: float) -> int:
        return (self.timestamp_offset + round(pts_s * CLOCK_RATE_HZ)) & 0xFFFFFFFF

    def play(self) -> None:
        if not self.playing:
            self.playing = True
            # A decoder can only start at a key frame (and its SPS and PPS).
            self.waiting_for_keyframe = True
            self.mount._add_player(self)

    def pause(self) -> None:
        if self.playing:
            self.playing = False
            self.mount._remove_player(self)

    def send_access_unit(self, payloads: list[RtpPayload], pts_s: float, keyframe: bool) -> bool:
        """Send one frame's packets; False when the frame is not sent to this client."""
        transport = self.transport
        if transport is None or transport.closing:
            return False
        now = time.monotonic()
        if transport.buffered_bytes() > self.server.max_client_buffer_bytes:
            if self.stalled_since_s is None:
                self.stalled_since_s = now
            self.waiting_for_keyframe = True
            self.mount.client_frames_dropped += 1
            return False
        self.stalled_since_s = None
        if self.waiting_for_keyframe and not keyframe:
            return False
        self.waiting_for_keyframe = False
        timestamp = self.rtp_timestamp(pts_s)
        packets = []
        sequence = self.sequence
        for payload in payloads:
            header = rtp_header(
                marker=payload.last, sequence=sequence, timestamp=timestamp, ssrc=self.ssrc
            )
            packets.append(header + payload.data)
            sequence = (sequence + 1) & 0xFFFF
            self.octets_sent += len(payload.data)
        self.sequence = sequence
        self.packets_sent += len(packets)
        transport.send_rtp(packets)
        if self.latest_pts_s is None or pts_s >= self.latest_pts_s:
            self.latest_pts_s, self.latest_sent_s = pts_s, now
        if self.next_report_s is None:
            self.next_report_s = now  # the first report lets the client sync at once
        return True

    def send_report(self, now_s: float) -> None:
        """An RTCP sender report: the wall-clock time now and the RTP time of the same instant,
        the newest frame's timestamp moved on by the time since it was sent."""
        if self.transport is None or self.latest_pts_s is None:
            return
        media_s = self.latest_pts_s + (now_s - self.latest_sent_s)
        self.transport.send_rtcp(
            sender_report(
                ssrc=self.ssrc,
                unix_time_s=time.time(),
                rtp_timestamp=self.rtp_timestamp(media_s),
                packets=self.packets_sent,
                octets=self.octets_sent,
                cname=self.server.cname,
            )
        )
        self.next_report_s = now_s + SENDER_REPORT_INTERVAL_S

    def note_send_error(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused_sends += 1
        else:
            self.server._note_error(f"session {self.id} to {self.connection.name}: {exc!r}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pause()
        if self.transport is not None:
            self.transport.close()
        self.connection.sessions.discard(self)
        self.server._sessions.pop(self.id, None)


_Handler = Callable[[_Connection, Request], Awaitable[bytes]]


class RtspServer:
    """An RTSP 1.0 server (RFC 2326) of live H.264 streams, one per path (mount)::

        server = RtspServer(host="0.0.0.0", port=8554)
        server.start()
        mount = server.mount("/cam1")
        mount.push(access_unit, pts_s=0.0, keyframe=True)  # from any thread
        print(server.url("/cam1"))  # rtsp://HOST:8554/cam1
        server.stop()

    Clients play over RTP interleaved on the RTSP connection (TCP) or over UDP unicast; several
    at once on the same and on different paths. Each client starts at the next key frame.

    Args:
        host: address to listen on; ``"0.0.0.0"`` for every IPv4 interface.
        port: TCP port; 0 picks a free one (read it from :attr:`port` after :meth:`start`).
        session_timeout_s: a UDP session without a request or RTCP report for this long ends.
        stall_timeout_s: a client whose send buffer stays full this long is disconnected.
        max_client_buffer_bytes: bytes queued for a client beyond which its frames are dropped.
        max_packet_bytes: largest RTP packet, header included; larger NAL units are fragmented.

    Attributes:
        errors: the last internal errors (a request that failed, an ``on_sent`` that raised),
            as text; :attr:`error_count` counts them all.
        setups: sessions set up so far, by lower transport: ``{"tcp": n, "udp": m}``.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        *,
        session_timeout_s: float = SESSION_TIMEOUT_S,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        max_client_buffer_bytes: int = MAX_CLIENT_BUFFER_BYTES,
        max_packet_bytes: int = MAX_PACKET_BYTES,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"the RTSP port must be 0-65535, not {port}")
        if session_timeout_s <= 0 or stall_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be positive, not {session_timeout_s=} {stall_timeout_s=}"
            )
        if max_packet_bytes < RTP_HEADER_BYTES + 3:
            raise ValueError(f"max_packet_bytes must be at least 15, not {max_packet_bytes}")
        self.host = host
        self.session_timeout_s = session_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_client_buffer_bytes = max_client_buffer_bytes
        self.max_packet_bytes = max_packet_bytes
        self.cname = f"panoptes@{socket.gethostname()}"
        self.errors: deque[str] = deque(maxlen=_MAX_ERRORS_KEPT)
        self.error_count = 0
        self.setups = {"tcp": 0, "udp": 0}
        self._port = port
        self._mounts: dict[str, H264Mount] = {}
        self._mounts_lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._handlers: dict[str, _Handler] = {
            "OPTIONS": self._options,
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "PAUSE": self._pause,
            "TEARDOWN": self._teardown,
            "GET_PARAMETER": self._get_parameter,
            "SET_PARAMETER": self._set_parameter,
        }

    @property
    def port(self) -> int:
        """The TCP port: the one asked for, or the one picked for port 0 once started."""
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped

    @property
    def paths(self) -> list[str]:
        """The mounted paths."""
        with self._mounts_lock:
            return sorted(self._mounts)

    def start(self) -> None:
        """Listen and serve in a background thread.

        Raises:
            RtspServerError: the address cannot be listened on (the port is taken, the host is
                not an address of this machine); the message names ``host:port``.
            RuntimeError: the server was started before.
        """
        if self._thread is not None:
            raise RuntimeError(f"the RTSP server on {self._where()} was started before")
        listener = _listen(self.host, self._port)
        self._port = listener.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failures: list[BaseException] = []
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run,
            args=(loop, listener, ready, failures),
            name=f"rtsp-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        ready.wait()
        if failures:
            self._stopped = True
            self._loop = None
            raise RtspServerError(
                f"the RTSP server on {self._where()} failed to start: {failures[0]!r}"
            ) from failures[0]

    def stop(self) -> None:
        """Close every client, socket and path, and join the server thread. Idempotent."""
        if self._stopped or self._thread is None:
            self._stopped = True
            return
        if threading.current_thread() is self._thread:
            # It would wait on the thread it runs in (a callback such as on_sent calling it).
            raise RuntimeError("RtspServer.stop() cannot be called from the server's thread")
        self._stopped = True
        with self._mounts_lock:
            mounts = list(self._mounts.values())
            self._mounts.clear()
        for mount in mounts:
            mount._close("the server stopped")
        loop, thread = self._loop, self._thread
        self._loop = None
        if loop is not None and thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(_STOP_TIMEOUT_S)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT_S)

    def mount(self, path: str) -> H264Mount:
        """Add a path that H.264 can be pushed into.

        Raises:
            ValueError: the path is malformed or already mounted.
        """
        path = normalize_path(path)
        with self._mounts_lock:
            if path in self._mounts:
                raise ValueError(f"{path} is already mounted on the RTSP server {self._where()}")
            mount = H264Mount(self, path)
            self._mounts[path] = mount
        return mount

    def unmount(self, path: str) -> None:
        """Remove a path; its clients are disconnected.

        Raises:
            KeyError: nothing is mounted at ``path``.
        """
        path = normalize_path(path)
        with self._mounts_lock:
            mount = self._mounts.pop(path, None)
        if mount is None:
            raise KeyError(f"nothing is mounted at {path} on the RTSP server {self._where()}")
        mount._close("the path was unmounted")
        loop = self._loop
        if loop is None:
            return
        if threading.current_thread() is self._thread:
            self._end_sessions_of(mount)
        else:
            asyncio.run_coroutine_threadsafe(self._end_sessions_async(mount), loop).result(
                _STOP_TIMEOUT_S
            )

    def url(self, path: str, host: str | None = None) -> str:
        """The URL of ``path``: ``rtsp://HOST:PORT/path``.

        ``host`` defaults to the listening address, or to this machine's outward address when
        listening on every interface.
        """
        path = normalize_path(path)
        if self._port == 0:
            raise RuntimeError("the port is picked when the server starts: start it first")
        host = host or self.host
        if host in _WILDCARD_HOSTS:
            host = _outward_address()
        if ":" in host:
            host = f"[{host}]"
        return f"rtsp://{host}:{self._port}{quote(path)}"

    def __enter__(self) -> RtspServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "not started"
        return f"<RtspServer {self._where()} {state}, paths {self.paths}>"

    def _where(self) -> str:
        return f"[{self.host}]:{self._port}" if ":" in self.host else f"{self.host}:{self._port}"

    def _note_error(self, text: str) -> None:
        self.error_count += 1
        self.errors.append(text)

    # The server thread.

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        ready: threading.Event,
        failures: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                server = loop.run_until_complete(
                    asyncio.start_server(
                        self._serve_connection, sock=listener, limit=MAX_REQUEST_BYTES
                    )
                )
                loop.create_task(self._keep_house())
            except BaseException as exc:
                listener.close()
                failures.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        for session in list(self._sessions.values()):
            session.close()
        for connection in list(self._connections):
            connection.abort()
        # Let the connection handlers see their connections close.
        await asyncio.sleep(0)

    async def _keep_house(self) -> None:
        """Sender reports, and the end of timed-out sessions and stalled clients."""
        while True:
            await asyncio.sleep(_HOUSEKEEPING_INTERVAL_S)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                try:
                    self._check_session(session, now)
                except Exception as exc:
                    self._note_error(f"session {session.id}: {exc!r}")
            for connection in list(self._connections):
                idle_s = now - connection.last_activity_s
                if not connection.sessions and idle_s > self.session_timeout_s:
                    connection.abort()

    def _check_session(self, session: _Session, now: float) -> None:
        transport = session.transport
        if transport is not None and session.stalled_since_s is not None:
            if transport.buffered_bytes() <= self.max_client_buffer_bytes:
                session.stalled_since_s = None
            elif now - session.stalled_since_s > self.stall_timeout_s:
                self._end_session(session)
                return
        if session.refused_sends >= MAX_REFUSED_SENDS:
            self._end_session(session)
            return
        # An interleaved session lives as long as its connection: the connection is the proof
        # of life that requests and reports are for UDP.
        if not session.interleaved and now - session.last_activity_s > self.session_timeout_s:
            session.close()
            return
        if session.playing and session.next_report_s is not None and now >= session.next_report_s:
            session.send_report(now)

    def _end_session(self, session: _Session) -> None:
        """End a session whose client went away or stopped reading; an interleaved one by
        closing its connection, which is how its client learns of it."""
        if session.interleaved:
            session.connection.abort()
        session.close()

    def _end_sessions_of(self, mount: H264Mount) -> None:
        for session in list(self._sessions.values()):
            if session.mount is mount:
                self._end_session(session)

    async def _end_sessions_async(self, mount: H264Mount) -> None:
        self._end_sessions_of(mount)

    def _resolve(self, path: str) -> H264Mount | None:
        """The mount a request path names: the path itself (aggregate control) or its track."""
        mount = self._mounts.get(path)
        if mount is not None:
            return mount
        parent, _, last = path.rpartition("/")
        return self._mounts.get(parent or "/") if last == TRACK else None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER_BYTES)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            await self._read_requests(connection, reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: its sessions end below
        finally:
            self._connections.discard(connection)
            for session in list(connection.sessions):
                session.close()
            if not connection.closing:
                writer.close()

    async def _read_requests(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        while not connection.closing:
            first = await reader.readexactly(1)
            connection.last_activity_s = time.monotonic()
            if first == b"$":
                # An interleaved packet from the client: RTCP receiver reports, proof of life.
                header = await reader.readexactly(3)
                await reader.readexactly(int.from_bytes(header[1:3], "big"))
                for session in connection.sessions:
                    transport = session.transport
                    if isinstance(transport, _InterleavedTransport) and (
                        header[0] in transport.channels
                    ):
                        session.touch()
                continue
            if first in (b"\r", b"\n"):
                continue  # stray line ends between requests
            try:
                head = first + await reader.readuntil(b"\r\n\r\n")
                method, url, version, headers = parse_head(head[:-4])
                length = int(headers.get("content-length", "0"))
                if not 0 <= length <= MAX_REQUEST_BYTES:
                    raise BadRequest(f"Content-Length {length} is out of range")
            except (asyncio.LimitOverrunError, BadRequest, ValueError):
                # Not RTSP, or not a request this server can read: say so and hang up, as
                # nothing after it can be framed.
                connection.write(format_response(400, None))
                writer = connection.writer
                writer.close()
                return
            body = await reader.readexactly(length) if length else b""
            request = Request(method, url, version, headers, body)
            connection.write(await self._respond(connection, request))

    async def _respond(self, connection: _Connection, request: Request) -> bytes:
        if "cseq" not in request.headers:
            return format_response(400, None)
        cseq = request.cseq
        if request.version != "RTSP/1.0":
            return format_response(505, cseq)
        handler = self._handlers.get(request.method)
        if handler is None:
            status = 405 if request.method in ("ANNOUNCE", "RECORD", "REDIRECT") else 501
            return format_response(status, cseq, {"Allow": PUBLIC_METHODS})
        if "require" in request.headers:
            return format_response(551, cseq, {"Unsupported": request.headers["require"]})
        try:
            return await handler(connection, request)
        except Exception as exc:
            self._note_error(f"{request.method} {request.url} from {connection.name}: {exc!r}")
            return format_response(500, cseq)

    def _session_of(self, request: Request) -> _Session | None:
        session_id = request.session_id
        return self._sessions.get(session_id) if session_id is not None else None

    def _session_header(self, session: _Session) -> dict[str, str]:
        return {"Session": f"{session.id};timeout={round(self.session_timeout_s)}"}

    async def _options(self, connection: _Connection, request: Request) -> bytes:
        session = self._session_of(request)
        if session is not None:
            session.touch()
        return format_response(200, request.cseq, {"Public": PUBLIC_METHODS})

    async def _describe(self, connection: _Connection, request: Request) -> bytes:
        mount = self._mounts.get(request.path)
        if mount is None:
            return format_response(404, request.cseq)
        await mount._wait_for_parameter_sets(DESCRIBE_WAIT_S)
        parts = urlsplit(request.url)
        # Clients resolve the track's control URL against the base: it must end with "/".
        base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/", "", ""))
        headers = {"Content-Type": "application/sdp", "Content-Base": base}
        return format_response(200, request.cseq, headers, mount._sdp(connection.local_host))

    async def _setup(self, connection: _Connection, request: Request) -> bytes:
        cseq = request.cseq
        mount = self._resolve(request.path)
        if mount is None:
            return format_response(404, cseq)
        offers, _refused = parse_transports(request.headers.get("transport", ""))
        if not offers:
            return format_response(461, cseq)
        session_id = request.session_id
        if session_id is not None:
            session = self._sessions.get(session_id)
            if session is None:
                return format_response(454, cseq)
            if session.mount is not mount:
                # A session carries the one track of one path.
                return format_response(459, cseq)
            if session.playing:
                return format_response(455, cseq)
            if session.transport is not None:
                session.transport.close()
                session.transport = None
        else:
            session = _Session(self, secrets.token_hex(8), mount, connection)
            self._sessions[session.id] = session
            connection.sessions.add(session)
        try:
            session.transport = await self._open_transport(connection, session, offers[0])
        except RtspServerError as exc:
            self._note_error(str(exc))
            session.close()
            return format_response(503, cseq)
        session.url = request.url
        session.touch()
        self.setups["tcp" if session.interleaved else "udp"] += 1
        transport = f'{session.transport.describe()};ssrc={session.ssrc:08X};mode="PLAY"'
        return format_response(200, cseq, {"Transport": transport, **self._session_header(session)})

    async def _open_transport(
        self, connection: _Connection, session: _Session, offer: TransportSpec
    ) -> _RtpTransport:
        if offer.client_ports is None:
            used = connection.channels_in_use()
            channels = offer.interleaved
            if channels is None or used & set(channels):
                # The server may pick the channels (RFC 2326, section 12.39): the first free pair.
                first = next(c for c in range(0, 254, 2) if not used & {c, c + 1})
                channels = (first, first + 1)
            return _InterleavedTransport(connection, channels)
        loop = asyncio.get_running_loop()
        rtp_socket, rtcp_socket = _bind_udp_pair(connection.local_host)
        try:
            client_host = connection.peer_host
            rtp_socket.connect((client_host, offer.client_ports[0]))
            rtcp_socket.connect((client_host, offer.client_ports[1]))
            server_ports = (rtp_socket.getsockname()[1], rtcp_socket.getsockname()[1])
            rtp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpReceiver(session, is_rtcp=False), sock=rtp_socket
            )
            rtcp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpReceiver(session, is_rtcp=True), sock=rtcp_socket
            )
        except OSError as exc:
            rtp_socket.close()
            rtcp_socket.close()
            raise RtspServerError(
                f"cannot send UDP to {connection.peer_host}:{offer.client_ports[0]}: {exc}"
            ) from exc
        return _UdpTransport(rtp, rtcp, offer.client_ports, server_ports)

    async def _play(self, connection: _Connection, request: Request) -> bytes:
        cseq = request.cseq
        session = self._session_of(request)
        if session is None:
            return format_response(454, cseq)
        if request.path != "*" and self._resolve(request.path) is not session.mount:
            return format_response(455, cseq)
        if session.transport is None:
            return format_response(455, cseq)
        session.touch()
        session.play()
        rtp_time = session.rtp_timestamp(session.mount._latest_pts_s)
        headers = {
            **self._session_header(session),
            "Range": "npt=0.000-",
            "RTP-Info": f"url={session.url};seq={session.sequence};rtptime={rtp_time}",
        }
        return format_response(200, cseq, headers)

    async def _pause(self, connection: _Connection, request: Request) -> bytes:
        session = self._session_of(request)
        if session is None:
            return format_response(454, request.cseq)
        session.touch()
        session.pause()
        return format_response(200, request.cseq, self._session_header(session))

    async def _teardown(self, connection: _Connection, request: Request) -> bytes:
        session = self._session_of(request)
        if session is None:
            return format_response(454, request.cseq)
        session.close()
        return format_response(200, request.cseq)

    async def _get_parameter(self, connection: _Connection, request: Request) -> bytes:
        # Clients send it empty, as a keep-alive; no parameters are kept.
        return self._keep_alive(request, 200)

    async def _set_parameter(self, connection: _Connection, request: Request) -> bytes:
        return self._keep_alive(request, 451 if request.body.strip() else 200)

    def _keep_alive(self, request: Request, status: int) -> bytes:
        if request.session_id is not None:
            session = self._session_of(request)
            if session is None:
                return format_response(454, request.cseq)
            session.touch()
            return format_response(status, request.cseq, self._session_header(session))
        return format_response(status, request.cseq)


def normalize_path(path: str) -> str:
    """A mount path as the server keeps it: one leading slash, no trailing or repeated ones.

    Raises:
        ValueError: ``path`` does not start with "/", or holds "?", "#" or a control character
            (which a URL path cannot hold even quoted; other characters are quoted in URLs).
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"an RTSP path starts with '/', e.g. '/cam1'; got {path!r}")
    if any(char in "?#" or not char.isprintable() for char in path):
        raise ValueError(f"an RTSP path cannot hold '?', '#' or control characters: {path!r}")
    while "//" in path:
        path = path.replace("//", "/")
    return "/" + path.strip("/")


def _listen(host: str, port: int) -> socket.socket:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise RtspServerError(
            f"cannot listen for RTSP on {where}: unknown host ({exc.strerror})"
        ) from exc
    listener = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server listen at once despite connections still in TIME_WAIT; on
        # Linux it does not let two servers share the port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        hint = {
            errno.EADDRINUSE: ": another server is on that port; stop it or pick another port",
            errno.EADDRNOTAVAIL: ": the host is not an address of this machine",
            errno.EACCES: ": ports below 1024 need privileges; pick a higher port",
        }.get(exc.errno or 0, "")
        error = RtspServerError(f"cannot listen for RTSP on {where}: {exc.strerror}{hint}")
        error.errno = exc.errno
        raise error from exc
    listener.setblocking(False)
    return listener


def _bind_udp_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on ``host`` with ports N and N + 1, N even (RFC 3550, section 11)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(64):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            if port % 2 == 0:
                rtcp = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    rtcp.bind((host, port + 1))
                except OSError:
                    rtcp.close()
                else:
                    rtp.setblocking(False)
                    rtcp.setblocking(False)
                    return rtp, rtcp
        except OSError:
            pass
        rtp.close()
    raise RtspServerError(f"no free pair of UDP ports on {host} for RTP and RTCP")


def _outward_address() -> str:
    """This machine's address on its default route, as other machines reach it; 127.0.0.1 when
    it has no network. A UDP connect sends nothing: it only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere for real
            address: str = probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return address


_shared: dict[tuple[str, int], RtspServer] = {}
_shared_lock = threading.Lock()
_stop_registered = False


def shared_server(host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> RtspServer:
    """The process-wide server on ``(host, port)``, started on first use and shared by every
    sink that streams there; stopped when the process exits (or by ``stop()``, after which the
    next call starts a new one).

    Raises:
        RtspServerError: the port is taken by another process.
    """
    global _stop_registered
    with _shared_lock:
        server = _shared.get((host, port))
        if server is None or not server.running:
            if not _stop_registered:
                atexit.register(_stop_shared_servers)
                _stop_registered = True
            server = RtspServer(host, port)
            server.start()
            _shared[(host, port)] = server
        return server


def _stop_shared_servers() -> None:
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.stop()
