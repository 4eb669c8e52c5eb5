"""Real RTSP clients run as programs: FFmpeg, GStreamer, OpenCV and PyAV, each told to decode
a number of frames and to say how many it did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

#: Clients, by the name the tests use.
CLIENTS = ("ffmpeg", "gstreamer", "opencv", "pyav")
#: Nanoseconds rtspsrc waits for the answer to its TEARDOWN when the pipeline stops.
GST_TEARDOWN_TIMEOUT_NS = 10 * 10**9

OPENCV_CLIENT = """
import sys, cv2
capture = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
count = 0
while count < int(sys.argv[2]):
    ok, image = capture.read()
    if not ok:
        break
    count += 1
    size = f"{image.shape[1]}x{image.shape[0]}"
capture.release()
print(f"frames={count} size={size if count else None}")
"""

PYAV_CLIENT = """
import sys, av
url, frames, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count = 0
with av.open(url, options={"rtsp_transport": transport}, timeout=(20, 20)) as container:
    for frame in container.decode(video=0):
        count += 1
        size = f"{frame.width}x{frame.height}"
        if count == frames:
            break
print(f"frames={count} size={size if count else None}")
"""


@dataclass
class ClientRun:
    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str

    def report(self) -> str:
        return (
            f"{' '.join(self.command)}\nexit {self.returncode}\n"
            f"stdout (end): {self.stdout[-2000:]}\nstderr (end): {self.stderr[-2000:]}"
        )


def client_command(
    client: str, url: str, transport: str, frames: int
) -> tuple[list[str], dict[str, str]]:
    """The command line of a client that decodes ``frames`` frames from ``url``, and its env."""
    env = os.environ.copy()
    if client == "ffmpeg":
        command = [
            *("ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", transport, "-i", url),
            *("-frames:v", str(frames), "-f", "null", "-", "-progress", "pipe:1", "-nostats"),
        ]
    elif client == "gstreamer":
        # identity ends the stream after `frames` decoded frames; fakesink prints a
        # last-message line per frame with -v, which counts them. rtspsrc gives its TEARDOWN
        # teardown-timeout to be answered before it cancels it (100 ms by default): too short
        # on a loaded machine.
        command = [
            *("gst-launch-1.0", "-v", "rtspsrc", f"location={url}", f"protocols={transport}"),
            f"teardown-timeout={GST_TEARDOWN_TIMEOUT_NS}",
            *("!", "rtph264depay", "!", "h264parse", "!", "avdec_h264"),
            *("!", "identity", f"eos-after={frames}", "!", "fakesink", "silent=false"),
        ]
    elif client == "opencv":
        # OpenCV's FFmpeg backend picks the RTSP transport from this variable only.
        env["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{transport}"
        command = [sys.executable, "-c", OPENCV_CLIENT, url, str(frames)]
    else:
        command = [sys.executable, "-c", PYAV_CLIENT, url, str(frames), transport]
    return command, env


#: What gst-launch prints when the stream ended after its frames (not on an error).
GST_EOS = 'Got EOS from element "pipeline0"'
#: Where each error gst-launch prints starts, and the function that posted it.
GST_ERROR = "ERROR: from element "
GST_ERROR_ORIGIN = re.compile(r"\.c\(\d+\): (\w+) \(\):")
GST_EOF = "Could not send message. (Received end-of-file)"
#: The errors of rtspsrc's shutdown race (see :func:`exited_cleanly`), by the function that
#: posts them.
GST_PAUSE_RACE_ERRORS = {"gst_rtspsrc_pause", "gst_rtspsrc_try_send"}


def exited_cleanly(client: str, run: ClientRun) -> bool:
    """Whether the client exited without an error, GStreamer's shutdown race aside.

    When a pipeline stops, rtspsrc (1.22 at least) sends PAUSE from its own thread for
    PLAYING -> PAUSED while the thread that stops the pipeline goes on to PAUSED -> READY, which
    flushes the connection to send TEARDOWN. When the flush wins, the PAUSE write is cancelled
    before a byte leaves, gstrtspconnection.c's writev_bytes reports that as GST_RTSP_EEOF
    ("Received end-of-file"), and gst_rtspsrc_pause, which forgives only GST_RTSP_EINTR, posts an
    error: gst-launch exits 1 after a stream that ended well. The server never sees that PAUSE,
    and answers the TEARDOWN that follows with 200 OK. Such a run is clean; any other error,
    one on TEARDOWN (gst_rtspsrc_close) included, is not.
    """
    if run.returncode == 0:
        return True
    if client != "gstreamer" or run.returncode != 1 or GST_EOS not in run.stdout:
        return False
    origins = set()
    for error in run.stderr.split(GST_ERROR)[1:]:
        origin = GST_ERROR_ORIGIN.search(error)
        if origin is None or GST_EOF not in error:
            return False
        origins.add(origin.group(1))
    return "gst_rtspsrc_pause" in origins and origins <= GST_PAUSE_RACE_ERRORS


def frames_read(client: str, run: ClientRun) -> int:
    """Frames the client decoded, from what it printed."""
    if client == "gstreamer":
        return sum("last-message = chain" in line for line in run.stdout.splitlines())
    # FFmpeg's progress says frame=N, the Python clients frames=N.
    values = [word.split("=", 1)[1] for word in run.stdout.split() if word.startswith("frame")]
    return int(values[-1]) if values else 0


def start_client(client: str, url: str, transport: str, frames: int) -> subprocess.Popen[str]:
    """Start a client; :func:`finish` waits for it."""
    command, env = client_command(client, url, transport, frames)
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(process: subprocess.Popen[str], timeout_s: float) -> ClientRun:
    """Wait for a client (killed past ``timeout_s``) and collect what it printed."""
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    command = process.args if isinstance(process.args, list) else [str(process.args)]
    return ClientRun([str(arg) for arg in command], process.returncode, stdout, stderr)
