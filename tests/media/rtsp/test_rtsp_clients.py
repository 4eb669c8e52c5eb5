"""Real RTSP clients read from the server: FFmpeg, GStreamer, OpenCV and PyAV, each over TCP
and over UDP, all at once on one path (with a client on another path, and one that never reads
its socket), 100 decoded frames each."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from rtsp_raw_client import RawRtspClient
from rtsp_real_clients import CLIENTS, ClientRun, finish, frames_read, start_client
from rtsp_served import ServedClips

FRAMES = 100
TRANSPORTS = ("tcp", "udp")
#: Seconds a client may take for its frames: 10 s of video at 10 fps, a wait for the first key
#: frame, its own start-up, on a loaded 2-core machine.
CLIENT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def client_runs(served: ServedClips) -> Iterator[dict[tuple[str, str], ClientRun]]:
    """Every client over every transport, started at once on ``/hall``, with an FFmpeg client
    on ``/parking`` and a client that plays ``/hall`` over TCP but never reads its socket."""
    for tool in ("ffmpeg", "gst-launch-1.0"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make system-deps` installs it")
    setups_before = dict(served.server.setups)
    processes: dict[tuple[str, str], subprocess.Popen[str]] = {}
    with RawRtspClient(served.url("/hall"), receive_buffer_bytes=4096) as never_reads:
        never_reads.setup_and_play()
        runs = [(client, "/hall", transport) for client in CLIENTS for transport in TRANSPORTS]
        for client, path, transport in [*runs, ("ffmpeg", "/parking", "tcp")]:
            processes[(f"{client}{path}", transport)] = start_client(
                client, served.url(path), transport, FRAMES
            )
        results = {key: finish(process, CLIENT_TIMEOUT_S) for key, process in processes.items()}
        # All of them were served while this client sat on a full socket.
        assert served.mount("/hall").clients >= 1
    # Each client used the transport it was told to use.
    setups = {kind: count - setups_before[kind] for kind, count in served.server.setups.items()}
    assert setups["udp"] >= len(CLIENTS), setups
    assert setups["tcp"] >= len(CLIENTS) + 2, setups
    yield results


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_client_reads_100_frames(
    client_runs: dict[tuple[str, str], ClientRun], client: str, transport: str
) -> None:
    run = client_runs[(f"{client}/hall", transport)]
    assert run.returncode == 0, run.report()
    assert frames_read(client, run) == FRAMES, run.report()
    if client in ("opencv", "pyav"):
        assert "size=768x432" in run.stdout, run.report()


def test_a_client_of_another_path_at_the_same_time(
    client_runs: dict[tuple[str, str], ClientRun],
) -> None:
    run = client_runs[("ffmpeg/parking", "tcp")]
    assert run.returncode == 0, run.report()
    assert frames_read("ffmpeg", run) == FRAMES, run.report()
