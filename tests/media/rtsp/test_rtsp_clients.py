"""Real RTSP clients read from the server: FFmpeg, GStreamer, OpenCV and PyAV, each over TCP
and over UDP, all at once on one path (with a client on another path, and one that never reads
its socket), 100 decoded frames each."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from rtsp_raw_client import RawRtspClient
from rtsp_real_clients import (
    CLIENTS,
    ClientRun,
    exited_cleanly,
    finish,
    frames_read,
    start_client,
)
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
    assert exited_cleanly(client, run), run.report()
    assert frames_read(client, run) == FRAMES, run.report()
    if client in ("opencv", "pyav"):
        assert "size=768x432" in run.stdout, run.report()


def test_a_client_of_another_path_at_the_same_time(
    client_runs: dict[tuple[str, str], ClientRun],
) -> None:
    run = client_runs[("ffmpeg/parking", "tcp")]
    assert exited_cleanly("ffmpeg", run), run.report()
    assert frames_read("ffmpeg", run) == FRAMES, run.report()


def gst_error(origin: str, message: str = "Could not send message. (Received end-of-file)") -> str:
    """An error as gst-launch prints it, posted by rtspsrc's function ``origin``."""
    element = "/GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0"
    return (
        f"ERROR: from element {element}: Could not write to resource.\n"
        f"Additional debug info:\n../gst/rtsp/gstrtspsrc.c(9235): {origin} (): {element}:\n"
        f"{message}\n"
    )


GST_EOS_STDOUT = 'Got EOS from element "pipeline0".\nExecution ended after 0:00:10.696941416\n'
#: What gst-launch printed in runs lost to rtspsrc's shutdown race, over TCP and over UDP.
GST_PAUSE_RACE = gst_error("gst_rtspsrc_try_send") + gst_error("gst_rtspsrc_pause")
#: ... and in runs whose server hung up on PAUSE or TEARDOWN instead of answering.
GST_NO_ANSWER = "Could not receive message. (Received end-of-file)"
GST_HUNG_UP = gst_error("gst_rtspsrc_try_send", GST_NO_ANSWER) + gst_error("gst_rtspsrc_close")
GST_PAUSE_REFUSED = gst_error("gst_rtspsrc_pause", "Internal Server Error (500)")
GST_CUT_OFF = gst_error("gst_rtspsrc_loop_interleaved", "The server closed the connection.")


@pytest.mark.parametrize(
    ("client", "returncode", "stdout", "stderr", "clean"),
    [
        ("gstreamer", 0, GST_EOS_STDOUT, "", True),
        ("gstreamer", 1, GST_EOS_STDOUT, GST_PAUSE_RACE, True),
        ("gstreamer", 1, GST_EOS_STDOUT, GST_HUNG_UP, False),
        ("gstreamer", 1, GST_EOS_STDOUT, GST_PAUSE_RACE + GST_HUNG_UP, False),
        ("gstreamer", 1, GST_EOS_STDOUT, GST_PAUSE_REFUSED, False),
        ("gstreamer", 1, "", GST_PAUSE_RACE, False),  # stopped before its frames
        ("gstreamer", 1, "", GST_CUT_OFF, False),
        ("ffmpeg", 1, GST_EOS_STDOUT, GST_PAUSE_RACE, False),
    ],
)
def test_only_gstreamers_shutdown_race_is_forgiven(
    client: str, returncode: int, stdout: str, stderr: str, clean: bool
) -> None:
    assert exited_cleanly(client, ClientRun([client], returncode, stdout, stderr)) is clean
