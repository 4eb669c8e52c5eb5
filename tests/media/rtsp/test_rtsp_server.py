"""The RTSP server byte by byte: SDP, RTP and RTCP over TCP and UDP, status codes, sessions, slow
clients, and the Python API, with a bare client on 127.0.0.1."""

from __future__ import annotations

import base64
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import av
import av.video.stream
import pytest
from media_clips import ONE_BY_ONE
from rtsp_raw_client import Depacketizer, RawRtspClient, RtpPacket, nal_types
from rtsp_served import ServedClips

from panoptes.core.errors import PanoptesError, SourceError
from panoptes.media import open_reader
from panoptes.media.rtsp import H264Mount, RtspServer, RtspServerError, shared_server
from panoptes.media.rtsp._h264 import NAL_IDR, NAL_PPS, NAL_SPS
from panoptes.media.rtsp._rtp import RTCP_SR, parse_rtcp, parse_sender_report

#: Seconds a condition polled for may take to come true (a generous bound, not a measurement).
DEADLINE_S = 15.0

SPS = bytes.fromhex("6742e01fda0140")  # enough of an SPS for the SDP: profile 66, level 3.1
PPS = bytes.fromhex("68ce3c80")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {DEADLINE_S} s: {what}")
        time.sleep(0.05)


def synthetic_access_unit(index: int, *, gop: int = 10, size: int = 3000) -> tuple[bytes, bool]:
    """A frame the server can carry (it does not decode): SPS, PPS and an IDR every ``gop``
    frames, a P slice otherwise, ``size`` bytes of slice data."""
    body = bytes((index + offset) % 251 + 1 for offset in range(size))
    keyframe = index % gop == 0
    if keyframe:
        return b"".join(b"\x00\x00\x00\x01" + unit for unit in (SPS, PPS, b"\x65" + body)), True
    return b"\x00\x00\x00\x01\x41" + body, False


@contextmanager
def pushing(
    mount: H264Mount,
    frame: Callable[[int], tuple[bytes, bool]] = synthetic_access_unit,
    interval_s: float = 0.02,
    frames: int | None = None,
) -> Iterator[list[int]]:
    """Push ``frame(i)`` every ``interval_s`` from a thread until the block ends (or ``frames``
    were pushed); yields a list that gets the count of frames pushed when the thread ends."""
    stop = threading.Event()
    pushed: list[int] = []

    def run() -> None:
        index = 0
        while not stop.is_set() and (frames is None or index < frames):
            data, keyframe = frame(index)
            mount.push(
                data, pts_s=index * interval_s, keyframe=keyframe, capture_time_s=time.time()
            )
            index += 1
            stop.wait(interval_s)
        pushed.append(index)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield pushed
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def server() -> Iterator[RtspServer]:
    with RtspServer("127.0.0.1", 0) as rtsp_server:
        yield rtsp_server
    assert not rtsp_server.errors, list(rtsp_server.errors)


def read_access_units(
    client: RawRtspClient, count: int
) -> tuple[list[bytes], list[RtpPacket], list[bytes]]:
    """The first ``count`` access units on channel 0, their packets, and the RTCP packets that
    came on channel 1 meanwhile."""
    depacketizer = Depacketizer()
    units: list[bytes] = []
    packets: list[RtpPacket] = []
    rtcp: list[bytes] = []
    while len(units) < count:
        channel, data = client.read_interleaved()
        if channel == 1:
            rtcp.append(data)
            continue
        packet = RtpPacket.parse(data)
        packets.append(packet)
        unit = depacketizer.add(packet)
        if unit is not None:
            units.append(unit)
    return units, packets, rtcp


def decode(units: list[bytes]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for unit in units:
        frames += decoder.decode(av.Packet(unit))
    return frames + decoder.decode(None)


# The SDP.


def test_sdp_describes_the_clip(served: ServedClips) -> None:
    with RawRtspClient(served.url("/hall")) as client:
        response = client.request("DESCRIBE", headers={"Accept": "application/sdp"})
    assert response.status == 200
    assert response.header("Content-Type") == "application/sdp"
    assert response.header("Content-Base") == served.url("/hall") + "/"
    lines = response.body.decode().split("\r\n")
    assert lines[0] == "v=0"
    assert "m=video 0 RTP/AVP 96" in lines
    assert "a=rtpmap:96 H264/90000" in lines
    assert "a=control:*" in lines and "a=control:track0" in lines
    fmtp = next(line for line in lines if line.startswith("a=fmtp:96 "))
    params = dict(item.split("=", 1) for item in fmtp.removeprefix("a=fmtp:96 ").split(";"))
    assert params["packetization-mode"] == "1"
    sps, pps = (base64.b64decode(item) for item in params["sprop-parameter-sets"].split(","))
    assert (sps[0] & 0x1F, pps[0] & 0x1F) == (NAL_SPS, NAL_PPS)
    assert params["profile-level-id"] == sps[1:4].hex()
    # The very parameter sets of the file (its avcC box: one SPS, then one PPS).
    with av.open(str(ONE_BY_ONE)) as container:
        extradata = container.streams.video[0].codec_context.extradata
    assert extradata is not None
    sps_bytes = int.from_bytes(extradata[6:8], "big")
    assert extradata[8 : 8 + sps_bytes] == sps
    assert extradata[8 + sps_bytes + 3 :].startswith(pps)
    assert params["profile-level-id"] == "4d401f"  # Main profile, level 3.1, as ffprobe says


# RTP and RTCP.


def test_rtp_and_sender_reports_over_tcp(served: ServedClips) -> None:
    with RawRtspClient(served.url("/hall")) as client:
        setup = client.setup_and_play()
        transport = setup.header("Transport")
        assert transport.startswith("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=")
        ssrc = int(transport.split("ssrc=")[1].split(";")[0], 16)
        rtp_info = dict(
            item.split("=", 1) for item in client.play.header("RTP-Info").split(";")[1:]
        )
        units, packets, rtcp = read_access_units(client, 12)
        while not rtcp:  # the first report follows the first frame
            channel, data = client.read_interleaved()
            if channel == 1:
                rtcp.append(data)
            else:
                packets.append(RtpPacket.parse(data))
    # A new client starts at a key frame, with its parameter sets.
    first = nal_types(units[0])
    assert first.index(NAL_SPS) < first.index(NAL_PPS) < first.index(NAL_IDR), first
    assert packets[0].sequence == int(rtp_info["seq"])
    assert all(packet.payload_type == 96 and packet.ssrc == ssrc for packet in packets)
    assert all(packet.size <= 1400 for packet in packets)
    assert any(packet.size > 1300 for packet in packets), "the key frame is fragmented (FU-A)"
    sequences = [packet.sequence for packet in packets]
    assert sequences == [(sequences[0] + i) & 0xFFFF for i in range(len(packets))]
    # One timestamp per frame; the marker on its last packet only.
    for before, after in itertools.pairwise(packets):
        assert (before.timestamp != after.timestamp) == before.marker
    frames = decode(units)
    assert len(frames) >= 10
    assert (frames[0].width, frames[0].height) == (768, 432)
    # The sender report: counts of what came before it on this connection.
    kinds = [kind for kind, _ in parse_rtcp(rtcp[0])]
    assert kinds[0] == RTCP_SR and 202 in kinds  # SR then SDES, as RFC 3550 asks
    report = parse_sender_report(parse_rtcp(rtcp[0])[0][1])
    before_report = packets[: report.packets]
    assert report.ssrc == ssrc
    assert report.packets > 0
    assert report.octets == sum(len(packet.payload) for packet in before_report)
    assert abs(report.unix_time_s - time.time()) < 60  # a wall-clock time, not a counter


def test_rtp_and_sender_reports_over_udp(served: ServedClips) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp_socket,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp_socket,
        RawRtspClient(served.url("/hall")) as client,
    ):
        rtp_socket.bind(("127.0.0.1", 0))
        rtcp_socket.bind(("127.0.0.1", 0))
        rtp_socket.settimeout(DEADLINE_S)
        rtcp_socket.settimeout(DEADLINE_S)
        ports = f"{rtp_socket.getsockname()[1]}-{rtcp_socket.getsockname()[1]}"
        setup = client.setup_and_play(f"RTP/AVP;unicast;client_port={ports}")
        transport = setup.header("Transport")
        assert f"client_port={ports};server_port=" in transport
        server_rtp, server_rtcp = map(
            int, transport.split("server_port=")[1].split(";")[0].split("-")
        )
        assert server_rtcp == server_rtp + 1 and server_rtp % 2 == 0
        depacketizer = Depacketizer()
        units = []
        while len(units) < 5:
            data, sender = rtp_socket.recvfrom(2048)
            assert sender[1] == server_rtp
            unit = depacketizer.add(RtpPacket.parse(data))
            if unit is not None:
                units.append(unit)
        report_data, sender = rtcp_socket.recvfrom(2048)
        assert sender[1] == server_rtcp
        report = parse_sender_report(parse_rtcp(report_data)[0][1])
        assert report.packets > 0 and report.octets > 0
        assert NAL_IDR in nal_types(units[0])
        assert len(decode(units)) >= 4
        mount = served.mount("/hall")
        clients_before = mount.clients
        assert client.request("TEARDOWN", served.url("/hall")).status == 200
        wait_for(lambda: mount.clients == clients_before - 1, "the client is gone on TEARDOWN")


# Status codes.


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("DESCRIBE", "/nowhere", {}, 404),
        ("SETUP", "/nowhere/track0", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}, 404),
        ("SETUP", "/hall/track0", {"Transport": "RTP/AVP;multicast;port=5000-5001"}, 461),
        ("SETUP", "/hall/track0", {"Transport": "RTP/SAVP/TCP;unicast;interleaved=0-1"}, 461),
        ("SETUP", "/hall/track0", {"Transport": "RTP/AVP;unicast"}, 461),
        ("SETUP", "/hall/track0", {"Transport": "RTP/AVP/TCP;unicast", "Session": "0ff"}, 454),
        ("PLAY", "/hall", {}, 454),
        ("PLAY", "/hall", {"Session": "12345678"}, 454),
        ("PAUSE", "/hall", {"Session": "12345678"}, 454),
        ("TEARDOWN", "/hall", {"Session": "12345678"}, 454),
        ("GET_PARAMETER", "/hall", {"Session": "12345678"}, 454),
        ("GET_PARAMETER", "/hall", {}, 200),
        ("OPTIONS", "*", {}, 200),
        ("RECORD", "/hall", {}, 405),
        ("FLY", "/hall", {}, 501),
        ("OPTIONS", "/hall", {"Require": "play.basic"}, 551),
    ],
)
def test_status(
    served: ServedClips, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    url = path if path == "*" else served.url("/hall").replace("/hall", path)
    with RawRtspClient(served.url("/hall")) as client:
        assert client.request(method, url, headers).status == status


def test_options_lists_the_methods(served: ServedClips) -> None:
    with RawRtspClient(served.url("/hall")) as client:
        public = client.request("OPTIONS").header("Public")
    assert set(public.split(", ")) >= {"DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER"}


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"DESCRIBE rtsp://x/hall RTSP/2.0\r\nCSeq: 1\r\n\r\n", 505),
        (b"DESCRIBE rtsp://x/hall RTSP/1.0\r\n\r\n", 400),  # no CSeq
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS, not RTSP
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
)
def test_malformed_requests(served: ServedClips, request_bytes: bytes, status: int) -> None:
    with RawRtspClient(served.url("/hall")) as client:
        client.send_raw(request_bytes)
        assert client.read_response().status == status


def test_setup_of_a_playing_session_is_refused(served: ServedClips) -> None:
    with RawRtspClient(served.url("/hall")) as client:
        client.setup_and_play()
        again = client.request(
            "SETUP",
            served.url("/hall/track0"),
            {"Transport": "RTP/AVP;unicast;client_port=5000-5001"},
        )
        assert again.status == 455


def test_pyav_reports_an_unknown_path(served: ServedClips) -> None:
    reader = open_reader(served.url("/nowhere"), open_timeout_s=DEADLINE_S)
    with pytest.raises(SourceError, match="no such stream"):
        reader.open()


# Sessions.


def test_pause_play_and_keep_alive(server: RtspServer) -> None:
    mount = server.mount("/cam")
    with pushing(mount), RawRtspClient(server.url("/cam", host="127.0.0.1")) as client:
        client.setup_and_play()
        wait_for(lambda: mount.clients == 1, "the client plays")
        assert client.request("PAUSE").status == 200
        assert mount.clients == 0
        keep_alive = client.request("GET_PARAMETER")
        assert keep_alive.status == 200
        assert keep_alive.header("Session").startswith(f"{client.session};timeout=")
        client.interleaved.clear()  # what came before the pause
        assert client.request("PLAY").status == 200
        units, _, _ = read_access_units(client, 3)
        assert NAL_IDR in nal_types(units[0])  # after PAUSE, PLAY resumes at a key frame
        assert client.request("TEARDOWN").status == 200
        assert mount.clients == 0


def test_a_udp_session_without_keep_alive_times_out() -> None:
    timing_out = RtspServer("127.0.0.1", 0, session_timeout_s=1.0)
    with (
        timing_out,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp_socket,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp_socket,
    ):
        rtp_socket.bind(("127.0.0.1", 0))
        rtcp_socket.bind(("127.0.0.1", 0))
        ports = f"{rtp_socket.getsockname()[1]}-{rtcp_socket.getsockname()[1]}"
        mount = timing_out.mount("/cam")
        url = timing_out.url("/cam", host="127.0.0.1")
        with pushing(mount), RawRtspClient(url) as client:
            client.setup_and_play(f"RTP/AVP;unicast;client_port={ports}")
            wait_for(lambda: mount.clients == 1, "the client plays")
            wait_for(lambda: mount.clients == 0, "the session times out")
        with RawRtspClient(url) as other:
            stale = other.request("GET_PARAMETER", headers={"Session": client.session or ""})
            assert stale.status == 454


def test_the_parameter_sets_go_before_each_idr_that_lacks_them(server: RtspServer) -> None:
    mount = server.mount("/cam")

    def frame(index: int) -> tuple[bytes, bool]:
        data, keyframe = synthetic_access_unit(index, gop=5)
        if keyframe and index > 0:  # only the first key frame carries them
            data = b"\x00\x00\x00\x01" + data.split(b"\x00\x00\x00\x01")[-1]
        return data, keyframe

    with pushing(mount, frame), RawRtspClient(server.url("/cam", host="127.0.0.1")) as client:
        wait_for(lambda: mount.frames_pushed > 6, "a few frames were pushed")
        described = client.request("DESCRIBE")
        assert b"profile-level-id=42e01f;" in described.body
        client.setup_and_play()
        units, _, _ = read_access_units(client, 6)
    assert nal_types(units[0]) == [NAL_SPS, NAL_PPS, NAL_IDR]
    assert nal_types(units[5]) == [NAL_SPS, NAL_PPS, NAL_IDR]
    assert nal_types(units[1]) == [1]


def test_on_sent_reports_each_frame_sent(server: RtspServer) -> None:
    mount = server.mount("/cam")
    sent: list[tuple[float, float]] = []
    mount.on_sent = lambda capture_s, sent_s: sent.append((capture_s, sent_s))
    with pushing(mount), RawRtspClient(server.url("/cam", host="127.0.0.1")) as client:
        client.setup_and_play()
        read_access_units(client, 5)
        # The callback follows the socket write: the client may read a frame before it runs.
        deadline = time.monotonic() + 5
        while len(sent) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(sent) >= 5
    assert all(sent_s >= capture_s for capture_s, sent_s in sent)


def test_unmount_disconnects_its_clients(server: RtspServer) -> None:
    mount = server.mount("/cam")
    with pushing(mount), RawRtspClient(server.url("/cam", host="127.0.0.1")) as client:
        client.setup_and_play()
        read_access_units(client, 1)
        server.unmount("/cam")
        with pytest.raises(ConnectionError):
            while True:
                client.read_interleaved()
    with pytest.raises(RuntimeError, match="/cam"):
        mount.push(synthetic_access_unit(0)[0], pts_s=0.0, keyframe=True)
    assert server.paths == []


def test_a_client_that_never_reads_is_dropped_without_stalling_others() -> None:
    slow_clients_cut = RtspServer(
        "127.0.0.1", 0, max_client_buffer_bytes=64 * 1024, stall_timeout_s=1.0
    )
    with slow_clients_cut:
        mount = slow_clients_cut.mount("/cam")
        url = slow_clients_cut.url("/cam", host="127.0.0.1")
        received: list[int] = [0]
        with (
            RawRtspClient(url, receive_buffer_bytes=4096) as never_reads,
            RawRtspClient(url) as reads,
            pushing(mount, lambda index: synthetic_access_unit(index, gop=1, size=20_000), 0.01),
        ):
            never_reads.setup_and_play()
            reads.setup_and_play()
            wait_for(lambda: mount.clients == 2, "both clients play")
            deadline = time.monotonic() + DEADLINE_S
            while mount.clients == 2 or received[0] < 50:
                assert time.monotonic() < deadline, "the client that never reads is still on"
                units, _, _ = read_access_units(reads, 1)
                received[0] += len(units)
            # Only the client that does not read was cut off; the other one still plays.
            assert mount.clients == 1
            with pytest.raises(ConnectionError):
                while True:
                    never_reads.read_interleaved()
        assert mount.client_frames_dropped > 0
        assert mount.frames_dropped == 0  # the producer never waited nor lost a frame


def test_a_client_that_stops_reading_a_while_loses_frames_then_tears_down() -> None:
    # A client that pauses reading fills its socket: frames are dropped for it, and it stays
    # connected (for stall_timeout_s, 10 s by default): the TEARDOWN it sends when it is back
    # gets its answer, after the frames queued before it.
    patient = RtspServer("127.0.0.1", 0, max_client_buffer_bytes=64 * 1024)
    with patient:
        mount = patient.mount("/cam")
        url = patient.url("/cam", host="127.0.0.1")
        with (
            RawRtspClient(url, receive_buffer_bytes=4096) as pausing,
            pushing(mount, lambda index: synthetic_access_unit(index, gop=1, size=20_000), 0.01),
        ):
            pausing.setup_and_play()
            wait_for(lambda: mount.client_frames_dropped > 0, "the socket of the client is full")
            assert mount.clients == 1
            assert pausing.request("TEARDOWN").status == 200
            assert mount.clients == 0
            assert pausing.request("OPTIONS").status == 200  # the connection stays open
    assert not patient.errors, list(patient.errors)


# The Python API.


def test_a_taken_port_is_a_clear_error(server: RtspServer) -> None:
    with pytest.raises(RtspServerError) as raised:
        RtspServer("127.0.0.1", server.port).start()
    assert f"127.0.0.1:{server.port}" in str(raised.value)
    assert "another server is on that port" in str(raised.value)
    assert isinstance(raised.value, OSError) and isinstance(raised.value, PanoptesError)


def test_mount_checks(server: RtspServer) -> None:
    mount = server.mount("/a/b/")
    assert mount.path == "/a/b" and server.paths == ["/a/b"]
    with pytest.raises(ValueError, match="already mounted"):
        server.mount("/a/b")
    with pytest.raises(ValueError, match="starts with '/'"):
        server.mount("cam")
    with pytest.raises(ValueError, match="cannot hold"):
        server.mount("/cam?x=1")
    with pytest.raises(KeyError, match="/nothing"):
        server.unmount("/nothing")
    with pytest.raises(ValueError, match="Annex B"):
        mount.push(b"\x01\x02\x03\x04", pts_s=0.0, keyframe=True)
    with pytest.raises(TypeError, match="bytes"):
        mount.push("frame", pts_s=0.0, keyframe=True)  # type: ignore[arg-type]
    assert server.url("/a/b", host="127.0.0.1") == f"rtsp://127.0.0.1:{server.port}/a/b"
    assert server.url("/my clip", host="::1") == f"rtsp://[::1]:{server.port}/my%20clip"


def test_push_before_start_is_an_error() -> None:
    mount = RtspServer("127.0.0.1", 0).mount("/cam")
    with pytest.raises(RuntimeError, match="not started"):
        mount.push(synthetic_access_unit(0)[0], pts_s=0.0, keyframe=True)


def test_shared_server_is_one_per_address() -> None:
    first = shared_server("127.0.0.1", 0)
    try:
        assert shared_server("127.0.0.1", 0) is first
        assert first.running
    finally:
        first.stop()
    second = shared_server("127.0.0.1", 0)
    try:
        assert second is not first and second.running
    finally:
        second.stop()
