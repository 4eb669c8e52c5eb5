"""Helpers of the torch backend tests: the devices to run on, frames of the shared clips."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

#: The shared models and clips: ``PANOPTES_TEST_ASSETS``, else ``../shared/assets`` beside the
#: checkout (a GPU machine gets a copy carried with the run).
ASSETS = Path(
    os.environ.get("PANOPTES_TEST_ASSETS")
    or Path(__file__).resolve().parents[3] / ".." / "shared" / "assets"
).resolve()
MODELS = ASSETS / "models"
VIDEOS = ASSETS / "videos"

#: Frames of each shared clip the comparisons run on: people near and far, cars seen from
#: above, a 1080p shop.
CLIP_FRAMES = {
    "one-by-one-person-detection.mp4": (150, 275, 400),
    "person-bicycle-car-detection.mp4": (0, 60, 120),
    "Retail02_short.mp4": (0, 30, 60),
}

#: cpu always; cuda where there is a GPU (``-m gpu``).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def device_or_skip(name: str) -> torch.device:
    """The torch device called ``name``; the test is skipped when it is CUDA and there is none."""
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return torch.device(name)


def read_frames(path: Path, indices: tuple[int, ...]) -> list[np.ndarray]:
    """The frames at ``indices`` of the clip at ``path``, BGR HWC uint8."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        for index in range(max(indices) + 1):
            if index in indices:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(frame)
            elif not capture.grab():
                break
    finally:
        capture.release()
    if len(frames) != len(indices):
        pytest.fail(f"{path}: could not decode frames {indices}")
    return frames
