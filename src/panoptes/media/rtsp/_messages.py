"""RTSP 1.0 messages (RFC 2326): requests, responses and the Transport header."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

RTSP_VERSION = "RTSP/1.0"

# A method is a token; the ones in use are letters and underscores (GET_PARAMETER).
_METHOD = re.compile(r"[A-Za-z_]+")

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    451: "Parameter Not Understood",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
    551: "Option not supported",
}


class BadRequest(ValueError):
    """A request that cannot be parsed; answered with 400 and the connection closed."""


@dataclass(frozen=True)
class Request:
    """An RTSP request. ``headers`` keys are lower case."""

    method: str
    url: str
    version: str
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def cseq(self) -> str:
        return self.headers["cseq"]

    @property
    def path(self) -> str:
        """The URL's path, unquoted, with repeated and trailing slashes dropped (``"/"`` at
        least); ``"*"`` for a request on the server as a whole."""
        if self.url == "*":
            return "*"
        path = unquote(urlsplit(self.url).path)
        while "//" in path:
            path = path.replace("//", "/")
        return "/" + path.strip("/")

    @property
    def session_id(self) -> str | None:
        """The Session header's id, without its parameters (``;timeout=``)."""
        value = self.headers.get("session")
        return value.split(";", 1)[0].strip() if value is not None else None


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, URL, version and headers of a request head (the bytes up to the blank line).

    Raises:
        BadRequest: the head is not text or not ``METHOD URL RTSP/x.y`` plus header lines.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the request is not UTF-8 text") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]) or not parts[2].startswith("RTSP/"):
        raise BadRequest(f"not an RTSP request line: {lines[0][:80]!r}")
    method, url, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return method.upper(), url, version, headers


def format_response(
    status: int,
    cseq: str | None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """An RTSP response; ``Content-Length`` is added when there is a body."""
    lines = [f"{RTSP_VERSION} {status} {REASONS.get(status, 'Unknown')}"]
    if cseq is not None:
        lines.append(f"CSeq: {cseq}")
    lines.append("Server: panoptes")
    lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


@dataclass(frozen=True)
class TransportSpec:
    """One transport a client offers in SETUP's Transport header.

    ``interleaved`` is the (RTP, RTCP) channel pair over the RTSP connection; ``client_ports``
    the (RTP, RTCP) UDP ports of the client. Exactly one is set for a transport the server takes.
    """

    interleaved: tuple[int, int] | None = None
    client_ports: tuple[int, int] | None = None

    @property
    def is_tcp(self) -> bool:
        return self.client_ports is None


def parse_transports(value: str) -> tuple[list[TransportSpec], list[str]]:
    """The transports of a Transport header that this server can use, in the client's order of
    preference, and why each other one cannot be used.

    Supported: ``RTP/AVP/TCP`` unicast (interleaved channels; the server picks them when
    absent) and ``RTP/AVP`` or ``RTP/AVP/UDP`` unicast with ``client_port``, mode PLAY.
    """
    usable: list[TransportSpec] = []
    refused: list[str] = []
    for offer in value.split(","):
        fields = [field.strip() for field in offer.split(";") if field.strip()]
        if not fields:
            continue
        protocol = fields[0].upper()
        params: dict[str, str] = {}
        for field in fields[1:]:
            key, _, item = field.partition("=")
            params[key.strip().lower()] = item.strip().strip('"')
        if protocol not in ("RTP/AVP", "RTP/AVP/UDP", "RTP/AVP/TCP"):
            refused.append(f"{fields[0]}: only RTP/AVP over UDP or TCP")
            continue
        if "multicast" in params:
            refused.append(f"{offer.strip()}: multicast is not served")
            continue
        if params.get("mode", "PLAY").upper() != "PLAY":
            refused.append(f"{offer.strip()}: only mode=PLAY")
            continue
        try:
            if protocol == "RTP/AVP/TCP":
                channels = params.get("interleaved")
                usable.append(TransportSpec(interleaved=_pair(channels, 255) if channels else None))
            elif "client_port" in params:
                usable.append(TransportSpec(client_ports=_pair(params["client_port"], 65535)))
            else:
                refused.append(f"{offer.strip()}: UDP needs client_port=RTP-RTCP")
        except ValueError as exc:
            refused.append(f"{offer.strip()}: {exc}")
    return usable, refused


def _pair(text: str, highest: int) -> tuple[int, int]:
    """``"a-b"`` as ``(a, b)``; ``"a"`` as ``(a, a + 1)``."""
    first, dash, second = text.partition("-")
    try:
        pair = (int(first), int(second) if dash else int(first) + 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a number pair such as 0-1") from None
    if not all(0 <= number <= highest for number in pair):
        raise ValueError(f"{text!r} is out of range 0-{highest}")
    return pair
