"""Running the CLI as a user does, and reading written videos with ffprobe, for the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PANOPTES = [sys.executable, "-m", "panoptes.cli"]

FFPROBE_ENTRIES = "nb_read_frames,width,height,r_frame_rate,codec_name"


def panoptes(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``panoptes ARGS`` in ``cwd``, its output captured."""
    return subprocess.run(
        [*PANOPTES, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


def ffprobe(path: Path, entries: str = FFPROBE_ENTRIES) -> dict[str, Any]:
    """What ffprobe reads from the first video stream (``entries``), decoding every frame."""
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe is missing: `make system-deps` installs it (Debian: ffmpeg)")
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", f"stream={entries}", "-of", "json", str(path)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    stream: dict[str, Any] = json.loads(result.stdout)["streams"][0]
    return stream
