"""Finding the GPUs that workers run on, without initialising CUDA in the supervisor.

``PANOPTES_FAKE_GPUS=N`` makes discovery return the ids ``0 .. N-1`` whatever the machine has:
the workers then run their pipelines on the devices their config names (the CPU), each with a
distinct GPU id in its labels and its ``CUDA_VISIBLE_DEVICES``. Tests use it to check the
layout (one worker per GPU, least-loaded placement) on machines without GPUs.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from panoptes.core.errors import ConfigError

__all__ = ["FAKE_GPUS_ENV", "discover_gpus", "mps_running", "shared_gpu_note", "worker_gpus"]

FAKE_GPUS_ENV = "PANOPTES_FAKE_GPUS"
_NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def discover_gpus() -> list[int]:
    """The ids of the GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` numbers them.

    In order: ``PANOPTES_FAKE_GPUS``; ``CUDA_VISIBLE_DEVICES`` when it lists ids; the GPUs
    ``nvidia-smi`` lists; the driver's ``/proc/driver/nvidia/gpus`` entries. Empty when there
    are none. CUDA itself is not initialised: that would take memory on every GPU for the
    supervisor, which runs no model.
    """
    fake = os.environ.get(FAKE_GPUS_ENV, "").strip()
    if fake:
        if not fake.isdigit():
            raise ConfigError(f"{FAKE_GPUS_ENV}={fake!r}: expected a number of GPUs, e.g. 2")
        return list(range(int(fake)))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        parts = [part.strip() for part in visible.split(",") if part.strip()]
        if all(part.isdigit() for part in parts):
            # Ids (not UUIDs): the GPUs allowed here, each a worker's CUDA_VISIBLE_DEVICES.
            return [int(part) for part in parts if int(part) >= 0]
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return sorted(int(line) for line in listed.split() if line.strip().isdigit())
    except (OSError, subprocess.SubprocessError):
        pass
    if _NVIDIA_PROC.is_dir():
        return list(range(len(list(_NVIDIA_PROC.iterdir()))))
    return []


def worker_gpus(count: int | None, gpus: Literal["all"] | Sequence[int] | None) -> list[int | None]:
    """The GPU of each worker: one worker per GPU of ``gpus`` ('all': every GPU found), or
    ``count`` workers dealt round robin over them; without ``gpus``, ``count`` workers (default
    1) on the devices the config names (None).

    Raises ConfigError when 'all' finds no GPU or a named GPU is not there.
    """
    if gpus is None:
        return [None] * (count or 1)
    found = discover_gpus()
    if gpus == "all":
        if not found:
            raise ConfigError(
                "--gpus all: no NVIDIA GPU found (nvidia-smi lists none); run without --gpus, "
                f"or set {FAKE_GPUS_ENV}=N to try the layout on the CPU"
            )
        chosen = found
    else:
        missing = [gpu for gpu in gpus if gpu not in found]
        if missing:
            have = ", ".join(map(str, found)) or "none"
            raise ConfigError(f"--gpus: no GPU {missing[0]} on this machine (GPUs found: {have})")
        chosen = list(gpus)
    return [chosen[index % len(chosen)] for index in range(count or len(chosen))]


def mps_running() -> bool:
    """Whether an MPS control daemon listens where this process's CUDA clients (and the workers
    it starts) look for one: ``$CUDA_MPS_PIPE_DIRECTORY``, by default ``/tmp/nvidia-mps``."""
    folder = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps"
    return (Path(folder) / "control").exists()


def shared_gpu_note(gpus: Sequence[int | None], config_gpu: bool) -> str | None:
    """A line for the console when several workers will share a GPU without NVIDIA's
    Multi-Process Service, which lets their kernels run side by side instead of in turns;
    None otherwise. ``gpus`` holds each worker's GPU (None: the devices the config names, a
    GPU when ``config_gpu``)."""
    if os.environ.get(FAKE_GPUS_ENV) or mps_running():
        return None
    counts = Counter(gpu for gpu in gpus if gpu is not None or config_gpu)
    gpu, workers = counts.most_common(1)[0] if counts else (None, 0)
    if workers < 2:
        return None
    which = "the config's GPU" if gpu is None else f"GPU {gpu}"
    return (
        f"note: {workers} workers share {which} and no MPS daemon runs: their "
        "kernels take turns on it. Start NVIDIA's Multi-Process Service first "
        "(nvidia-cuda-mps-control -d); on an H100 eight workers ran 1.8 times faster with it "
        "(docs/gpu.md)."
    )
