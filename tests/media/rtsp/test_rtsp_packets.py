"""The formats under the RTSP server, on small synthetic inputs: Annex B, RTP packetization
(RFC 6184), RTCP sender reports (RFC 3550), RTSP messages and Transport headers (RFC 2326)."""

from __future__ import annotations

import base64
import time

import pytest
from rtsp_raw_client import Depacketizer, RtpPacket

from panoptes.media.rtsp._h264 import (
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
    RTCP_SDES,
    RTCP_SR,
    packetize,
    parse_rtcp,
    parse_sender_report,
    rtp_header,
    sender_report,
)
from panoptes.media.rtsp.server import normalize_path

SPS = bytes.fromhex("6742e01fda0140")
PPS = bytes.fromhex("68ce3c80")


@pytest.mark.parametrize(
    ("stream", "units"),
    [
        (b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce", [b"\x67\x42", b"\x68\xce"]),
        (b"\x00\x00\x01\x65\x88\x00\x00\x00\x00\x01\x41\x9a", [b"\x65\x88", b"\x41\x9a"]),
        (b"\x00\x00\x01\x09\xf0\x00\x00\x01", [b"\x09\xf0"]),  # an empty unit at the end
        (b"\x67\x42", []),  # no start code: nothing
    ],
)
def test_split_annexb(stream: bytes, units: list[bytes]) -> None:
    assert split_annexb(stream) == units


def test_parameter_sets_go_after_an_access_unit_delimiter() -> None:
    aud, idr = b"\x09\xf0", b"\x65\x88"
    assert with_parameter_sets([aud, idr], SPS, PPS) == [aud, SPS, PPS, idr]
    assert with_parameter_sets([idr], SPS, PPS) == [SPS, PPS, idr]


def test_sdp_values_of_parameter_sets() -> None:
    assert profile_level_id(SPS) == "42e01f"
    first, second = sprop_parameter_sets(SPS, PPS).split(",")
    assert (base64.b64decode(first), base64.b64decode(second)) == (SPS, PPS)


@pytest.mark.parametrize("size", [1, 100, 1388, 1389, 5000, 100_000])
def test_packetize_round_trips(size: int) -> None:
    # An IDR slice without zero bytes, which a NAL unit never ends with.
    big = b"\x65" + bytes(index % 255 + 1 for index in range(size - 1))
    units = [SPS, PPS, big]
    payloads = packetize(units, max_payload_bytes=1388)
    assert all(len(payload.data) <= 1388 for payload in payloads)
    assert [payload.last for payload in payloads] == [False] * (len(payloads) - 1) + [True]
    depacketizer = Depacketizer()
    access_unit = None
    for index, payload in enumerate(payloads):
        header = rtp_header(marker=payload.last, sequence=index, timestamp=90_000, ssrc=7)
        access_unit = depacketizer.add(RtpPacket.parse(header + payload.data))
    assert access_unit is not None
    assert split_annexb(access_unit) == units
    fragmented = size > 1388
    assert any(payload.data[0] & 0x1F == 28 for payload in payloads) == fragmented
    if fragmented:
        first_fragment = payloads[2].data
        assert first_fragment[0] == 0x60 | 28  # NRI of the IDR kept, type FU-A
        assert first_fragment[1] == 0x80 | 5  # start bit, IDR


def test_rtp_header() -> None:
    header = rtp_header(marker=True, sequence=70_000, timestamp=2**32 + 5, ssrc=0xDEADBEEF)
    packet = RtpPacket.parse(header + b"\x41")
    assert (packet.marker, packet.payload_type, packet.sequence) == (True, 96, 70_000 - 65_536)
    assert (packet.timestamp, packet.ssrc) == (5, 0xDEADBEEF)


def test_sender_report_round_trips() -> None:
    now = time.time()
    data = sender_report(
        ssrc=42, unix_time_s=now, rtp_timestamp=123456, packets=10, octets=14000, cname="cam@x"
    )
    packets = parse_rtcp(data)
    assert [kind for kind, _ in packets] == [RTCP_SR, RTCP_SDES]
    assert all(len(packet) % 4 == 0 for _, packet in packets)
    report = parse_sender_report(packets[0][1])
    assert (report.ssrc, report.rtp_timestamp, report.packets, report.octets) == (
        42,
        123456,
        10,
        14000,
    )
    assert report.unix_time_s == pytest.approx(now, abs=1e-6)
    assert b"cam@x" in packets[1][1]


@pytest.mark.parametrize(
    "data", [b"\x80\xc8\x00\x06", b"\x40\xc8\x00\x00", b"\x80\xc8\x00\x00\x00"]
)
def test_malformed_rtcp(data: bytes) -> None:
    with pytest.raises(ValueError, match="RTCP"):
        parse_rtcp(data)


@pytest.mark.parametrize(
    ("header", "usable", "refused"),
    [
        ("RTP/AVP/TCP;unicast;interleaved=0-1", [TransportSpec(interleaved=(0, 1))], 0),
        ("RTP/AVP/TCP;unicast;interleaved=4", [TransportSpec(interleaved=(4, 5))], 0),
        ("RTP/AVP/TCP;unicast", [TransportSpec()], 0),
        (
            "RTP/AVP;unicast;client_port=5000-5001",
            [TransportSpec(client_ports=(5000, 5001))],
            0,
        ),
        (
            'RTP/AVP/UDP;unicast;client_port=5000-5001;mode="PLAY"',
            [TransportSpec(client_ports=(5000, 5001))],
            0,
        ),
        (
            "RTP/AVP;multicast, RTP/AVP/TCP;unicast;interleaved=2-3",
            [TransportSpec(interleaved=(2, 3))],
            1,
        ),
        ("RTP/AVP;unicast;client_port=5000-5001;mode=RECORD", [], 1),
        ("RTP/AVP;unicast", [], 1),
        ("RTP/AVP;unicast;client_port=x-y", [], 1),
        ("RTP/AVP;unicast;client_port=70000-70001", [], 1),
        ("RTP/SAVP;unicast;client_port=5000-5001", [], 1),
        ("", [], 0),
    ],
)
def test_parse_transports(header: str, usable: list[TransportSpec], refused: int) -> None:
    offers, reasons = parse_transports(header)
    assert offers == usable
    assert len(reasons) == refused


def test_parse_head_and_request_path() -> None:
    method, url, version, headers = parse_head(
        b"get_parameter rtsp://h:1/a%20b//c/?x=1 RTSP/1.0\r\nCSeq: 3\r\nSession: ab;timeout=60"
    )
    request = Request(method, url, version, headers)
    assert (request.method, request.cseq, request.session_id) == ("GET_PARAMETER", "3", "ab")
    assert request.path == "/a b/c"


@pytest.mark.parametrize(
    "head",
    [
        b"\xff\xfe",
        b"DESCRIBE rtsp://h/a",
        b"DESCRIBE rtsp://h/a HTTP/1.1",
        b"OPTIONS * RTSP/1.0\r\nx",
    ],
)
def test_parse_head_rejects(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_head(head)


def test_format_response() -> None:
    response = format_response(200, "4", {"Public": "OPTIONS"}, b"v=0\r\n")
    head, body = response.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "RTSP/1.0 200 OK" and lines[1] == "CSeq: 4"
    assert "Public: OPTIONS" in lines and "Content-Length: 5" in lines
    assert body == b"v=0\r\n"


@pytest.mark.parametrize(
    ("path", "normal"),
    [("/cam", "/cam"), ("/cam/", "/cam"), ("//a//b", "/a/b"), ("/", "/"), ("/my clip", "/my clip")],
)
def test_normalize_path(path: str, normal: str) -> None:
    assert normalize_path(path) == normal


@pytest.mark.parametrize("path", ["cam", "", "/a?b", "/a#b", "/a\nb"])
def test_normalize_path_rejects(path: str) -> None:
    with pytest.raises(ValueError, match="RTSP path"):
        normalize_path(path)
