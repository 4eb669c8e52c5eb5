"""Misbehaving RTSP servers on 127.0.0.1, for tests of how clients fail.

Each is a context manager that listens on a free port, serves every connection in a thread of
its own, and yields the server, whose ``url`` to open::

    from fake_servers import broken_sdp_server, random_bytes_server  # in tests/media/rtsp
    from media.rtsp.fake_servers import broken_sdp_server  # anywhere else under tests/

    with broken_sdp_server() as server:
        reader = open_reader(server.url)  # fails: what DESCRIBE returns is no SDP
"""

from __future__ import annotations

import contextlib
import random
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: What :func:`broken_sdp_server` answers DESCRIBE with: an application/sdp body that is no SDP
#: (no version line, no media line, a truncated attribute).
BROKEN_SDP = b"this is not a session description\r\nm=vid\r\na=rtpmap:96 H2"


class FakeServer:
    """A TCP server on 127.0.0.1 whose every connection goes to ``handle(connection)``.

    Attributes:
        port: the port it listens on.
        url: ``rtsp://127.0.0.1:PORT/stream``.
        connections: connections accepted so far.
        errors: exceptions other than a client hanging up, raised while serving (a bug in the
            fake server itself).
    """

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.connections = 0
        self.errors: list[BaseException] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                with contextlib.suppress(OSError):  # the client hung up: what clients do here
                    handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # Called with the exception being handled: kept for the test to see.
                outer.errors.append(sys.exc_info()[1] or RuntimeError("unknown error"))

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/stream"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _read_request(connection: socket.socket) -> tuple[str, str] | None:
    """The method and CSeq of the next request; None once the client hangs up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return None
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
    headers = dict(line.partition(":")[::2] for line in lines[1:])
    cseq = next((value.strip() for name, value in headers.items() if name.lower() == "cseq"), "0")
    return lines[0].split(" ", 1)[0], cseq


def _answer_with_broken_sdp(sdp: bytes) -> Callable[[socket.socket], None]:
    def handle(connection: socket.socket) -> None:
        while (request := _read_request(connection)) is not None:
            method, cseq = request
            head = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
            if method == "DESCRIBE":
                head += f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n"
                connection.sendall(head.encode() + b"\r\n" + sdp)
            elif method == "OPTIONS":
                connection.sendall(f"{head}Public: OPTIONS, DESCRIBE\r\n\r\n".encode())
            else:
                connection.sendall(
                    f"RTSP/1.0 455 Method Not Valid\r\nCSeq: {cseq}\r\n\r\n".encode()
                )

    return handle


def _send_random_bytes(
    total_bytes: int, seed: int, hang_up: bool
) -> Callable[[socket.socket], None]:
    def handle(connection: socket.socket) -> None:
        noise = random.Random(seed).randbytes(total_bytes)
        connection.sendall(noise)
        if hang_up:
            return
        # Wait for the client to give up, as a broken server that stays up would.
        while connection.recv(4096):
            pass

    return handle


@contextlib.contextmanager
def broken_sdp_server(sdp: bytes = BROKEN_SDP) -> Iterator[FakeServer]:
    """A server that answers OPTIONS, and DESCRIBE with ``sdp`` (200 OK, application/sdp):
    by default a body that is no SDP."""
    with FakeServer(_answer_with_broken_sdp(sdp)) as server:
        yield server


@contextlib.contextmanager
def random_bytes_server(
    total_bytes: int = 64 * 1024, seed: int = 0, *, hang_up: bool = False
) -> Iterator[FakeServer]:
    """A server that sends ``total_bytes`` random bytes to every client, whatever it asks,
    then hangs up (``hang_up``) or reads until the client does (a client waiting for an answer
    then times out)."""
    with FakeServer(_send_random_bytes(total_bytes, seed, hang_up)) as server:
        yield server
