"""Several pipeline processes on one host, one per GPU with ``--gpus all``: ``panoptes run CONFIG
--workers N``. The supervisor shares the sources out, restarts a worker that dies with its
streams, and shows the whole on the console, the REST API and ``/metrics``; ``--share K/N``
runs one host's share of a config (a Kubernetes StatefulSet's pod). See ``docs/workers.md``."""

from panoptes.workers.assign import Placement, Share, split_evenly
from panoptes.workers.gpus import FAKE_GPUS_ENV, discover_gpus, worker_gpus
from panoptes.workers.spec import WorkerSpec, tagged_path, worker_config
from panoptes.workers.supervisor import Supervisor, WorkerInfo, WorkerStreamRow

__all__ = [
    "FAKE_GPUS_ENV",
    "Placement",
    "Share",
    "Supervisor",
    "WorkerInfo",
    "WorkerSpec",
    "WorkerStreamRow",
    "discover_gpus",
    "split_evenly",
    "tagged_path",
    "worker_config",
    "worker_gpus",
]
