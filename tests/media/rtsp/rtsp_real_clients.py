"""Real RTSP clients run as programs: FFmpeg, GStreamer, OpenCV and PyAV, each told to decode
a number of frames and to say how many it did."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

#: Clients, by the name the tests use.
CLIENTS = ("ffmpeg", "gstreamer", "opencv", "pyav")

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
        # last-message line per frame with -v, which counts them.
        command = [
            *("gst-launch-1.0", "-v", "rtspsrc", f"location={url}", f"protocols={transport}"),
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
