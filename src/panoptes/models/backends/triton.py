"""The Triton backend: a model served by NVIDIA Triton Inference Server, over gRPC or HTTP.

Nothing of the model is needed on this side: its input and output names, shapes and types come
from the server's model metadata, its largest batch from the model's configuration. A batch goes
to the server as one request, split into several when it is larger than the model's
``max_batch_size``. When client and server share the host (a loopback URL), the tensors travel
through system shared memory instead of the socket.

A server that goes away is retried (``retries`` times, within ``timeout_s`` per request), then
reported by :class:`ServerUnavailableError`, naming the URL and the model. From then on, calls fail
at once, except one real request a :data:`RECONNECT_INTERVAL_S`: the caller's frames pass without
this model's results instead of each waiting for a dead server, and inference resumes with the
first request that the returning server answers (its shared memory registered again).

    backend = TritonBackend("yolox-nano", url="127.0.0.1:8001")      # model yolox_nano
    outputs = backend.run(batch)                                     # {"output": [N, 3549, 85]}
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import itertools
import math
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import tritonclient.grpc
import tritonclient.http
import tritonclient.utils.shared_memory as system_shm
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from panoptes.core.errors import ModelError, PanoptesError
from panoptes.models.backends import TensorInfo
from panoptes.models.detector import ModelWarning
from panoptes.models.zoo import ZOO

__all__ = [
    "DEFAULT_PORTS",
    "RECONNECT_INTERVAL_S",
    "Protocol",
    "ServerUnavailableError",
    "SharedMemory",
    "TritonBackend",
    "served_model_name",
]

Protocol = Literal["grpc", "http"]
SharedMemory = Literal["auto", "system", "off"]

#: Triton's own default ports.
DEFAULT_PORTS: dict[str, int] = {"grpc": 8001, "http": 8000}

#: While the server is unreachable, one request is tried this often; calls between fail at once.
RECONNECT_INTERVAL_S = 1.0

# gRPC waits up to two minutes between reconnection attempts by default: far too long to notice a
# server that restarted. Messages are as large as Triton allows (a batch of 1080p frames).
_GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

# gRPC status codes of a server that is away, restarting or overloaded: worth another try.
_TRANSIENT_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "ABORTED", "RESOURCE_EXHAUSTED", "UNKNOWN"}
)
# What a restarted server says while its model loads, or of a region it no longer knows.
_TRANSIENT_TEXT = ("unknown model", "not ready", "not found", "shared memory", "unavailable")

_region_numbers = itertools.count()


class ServerUnavailableError(PanoptesError, ConnectionError):
    """The Triton server cannot be reached, or does not serve the model at the moment."""


def served_model_name(model: str | Path) -> str:
    """The name a model is served under when none is given: a zoo model's file name without its
    extension (``yolox-nano`` -> ``yolox_nano``), a path's stem, else the name as it is."""
    text = str(model)
    entry = ZOO.get(text)
    if entry is not None:
        return Path(entry.filename).stem
    if text.endswith((".onnx", ".plan", ".engine", ".pt")) or "/" in text:
        return Path(text).stem
    return text


def _split_url(url: str, protocol: Protocol) -> tuple[str, str]:
    """``host:port`` as tritonclient takes it, and the host; a scheme of the protocol is dropped,
    a missing port is Triton's default."""
    address = url.strip()
    for scheme in (f"{protocol}://", "grpc://" if protocol == "grpc" else "http://"):
        address = address.removeprefix(scheme)
    if "://" in address:
        raise ModelError(
            f"Triton url {url!r}: give host:port (protocol {protocol}); TLS is not supported"
        )
    address = address.rstrip("/")
    if address.startswith("["):  # [::1]:8001
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    if not host:
        raise ModelError(f"Triton url {url!r} has no host")
    if port and not port.isdigit():
        raise ModelError(f"Triton url {url!r}: the port {port!r} is not a number")
    port = port or str(DEFAULT_PORTS[protocol])
    shown_host = f"[{host}]" if ":" in host else host
    return f"{shown_host}:{port}", host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_text(error: BaseException) -> str:
    if isinstance(error, InferenceServerException):
        return str(error.message() or error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a server away or restarting (worth another try), not a bad request."""
    if isinstance(error, OSError | http.client.HTTPException):
        return True  # refused, reset, closed, timed out: the HTTP client's socket errors
    if not isinstance(error, InferenceServerException):
        return False
    status = str(error.status() or "").removeprefix("StatusCode.")
    text = str(error.message() or "").lower()
    return status in _TRANSIENT_CODES or any(part in text for part in _TRANSIENT_TEXT)


@dataclass
class _Region:
    """A system shared-memory region registered with the server under ``name``."""

    name: str
    key: str
    byte_size: int
    handle: Any


class TritonBackend:
    """A model on a Triton Inference Server.

    ``path`` is the model as the infer element names it (a zoo name, a file); it gives the served
    name when ``model_name`` is None (see :func:`served_model_name`). ``url`` is the server's
    ``host:port`` (default ``localhost`` on Triton's port for the ``protocol``); ``model_version``
    None is the server's latest. ``timeout_s`` bounds each request (and the connection),
    ``retries`` the further attempts of a request the server did not answer. ``shared_memory``:
    ``system`` sends tensors through system shared memory (client and server on one host),
    ``off`` over the socket, ``auto`` the first for a loopback URL when the server accepts the
    regions. ``providers`` and ``threads`` are for local backends and unused here.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        protocol: Protocol = "grpc",
        model_name: str | None = None,
        model_version: int | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        shared_memory: SharedMemory = "auto",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ModelError(f"Triton protocol must be grpc or http, got {protocol!r}")
        if shared_memory not in ("auto", "system", "off"):
            raise ModelError(f"shared_memory must be auto, system or off, got {shared_memory!r}")
        if timeout_s <= 0:
            raise ModelError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ModelError(f"retries must be 0 or more, got {retries}")
        self.protocol: Protocol = protocol
        self.url, host = _split_url(url or f"localhost:{DEFAULT_PORTS[protocol]}", protocol)
        self.model_name = model_name or served_model_name(path)
        self.model_version = "" if model_version is None else str(model_version)
        self.timeout_s = timeout_s
        self.retries = retries
        self._api: ModuleType = tritonclient.grpc if protocol == "grpc" else tritonclient.http
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._regions: dict[str, _Region] = {}
        self._registered = False
        self._down_since: float | None = None
        self._next_try = 0.0
        self._last_error = ""
        self.requests = 0
        """Requests answered by the server."""
        self.failed_requests = 0
        """Requests that failed, retries included."""

        self._describe()
        wanted = shared_memory == "system" or (shared_memory == "auto" and _is_loopback(host))
        self.shared_memory = False
        """Whether tensors travel through system shared memory."""
        if wanted:
            self._start_shared_memory(required=shared_memory == "system")

    # -- what the server says of the model ---------------------------------------------------------

    @property
    def _where(self) -> str:
        version = f" version {self.model_version}" if self.model_version else ""
        return f"Triton server {self.url} ({self.protocol}), model {self.model_name}{version}"

    def _describe(self) -> None:
        """Inputs, outputs and max batch size from the server, retried as requests are."""
        metadata, config = self._with_retries(
            lambda client: (
                client.get_model_metadata(self.model_name, self.model_version, **self._json),
                client.get_model_config(self.model_name, self.model_version, **self._json),
            ),
            doing="cannot read the model's metadata",
            when_down=self._not_served,
        )
        config = config.get("config", config)  # gRPC wraps it
        self.max_batch_size: int = int(config.get("max_batch_size", 0) or 0)
        """The most images one request may carry (0: the model does no batching)."""
        self.inputs = [self._tensor_info(item, "input") for item in metadata.get("inputs", [])]
        self.outputs = [self._tensor_info(item, "output") for item in metadata.get("outputs", [])]
        if not self.inputs or not self.outputs:
            raise ModelError(f"{self._where} lists no inputs or no outputs")
        # The model configuration's parameters stand for an ONNX file's metadata (labels...).
        self.metadata: dict[str, str] = {
            key: str(value.get("string_value", ""))
            for key, value in (config.get("parameters") or {}).items()
            if isinstance(value, dict) and key != "workspace-path"
        }
        self._input = self.inputs[0]
        self._input_datatype = str(metadata["inputs"][0]["datatype"])

    @property
    def _json(self) -> dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def _tensor_info(self, item: dict[str, Any], role: str) -> TensorInfo:
        datatype = str(item.get("datatype", ""))
        dtype = triton_to_np_dtype(datatype)
        if dtype is None:
            raise ModelError(f"{self._where}: {role} {item.get('name')!r} has type {datatype}")
        shape = tuple(None if int(dim) < 0 else int(dim) for dim in item.get("shape", []))
        return TensorInfo(str(item["name"]), shape, np.dtype(dtype))

    def _not_served(self, error: BaseException) -> Exception:
        """The error when the model cannot be described: a clear one for a model not served."""
        text = _error_text(error)
        if "unknown model" in text.lower() or "not found" in text.lower():
            return ModelError(
                f"{self._where} is not served there ({text}); check model_name and model_version "
                "against the server's model repository"
            )
        return ServerUnavailableError(f"{self._where}: cannot read the model's metadata: {text}")

    # -- connections -------------------------------------------------------------------------------

    def _client(self) -> Any:
        """This thread's client: tritonclient's HTTP client belongs to the thread that made it
        (gevent), so every thread gets its own, for both protocols alike."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._api.InferenceServerClient(self.url, channel_args=_GRPC_CHANNEL_ARGS)
            else:
                client = self._api.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _with_retries(self, call: Any, *, doing: str, when_down: Any = None) -> Any:
        """``call(client)``, tried again after a transient failure, ``retries`` times."""
        attempts = 1 if self._down_since is not None else self.retries + 1
        for attempt in range(attempts):
            try:
                result = call(self._client())
            except Exception as error:
                self.failed_requests += 1
                if not _is_transient(error):
                    raise ModelError(f"{self._where}: {doing}: {_error_text(error)}") from error
                self._registered = False  # a restarted server has forgotten the regions
                self._last_error = _error_text(error)
                if attempt + 1 < attempts:
                    time.sleep(min(0.1 * 2**attempt, self.timeout_s))
                    continue
                if self._down_since is None:
                    self._down_since = time.monotonic()
                self._next_try = time.monotonic() + RECONNECT_INTERVAL_S
                if when_down is not None:
                    raise when_down(error) from error
                raise ServerUnavailableError(
                    f"{self._where}: {doing} after {attempts} attempt(s): {self._last_error}"
                ) from error
            self._down_since = None
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- shared memory -----------------------------------------------------------------------------

    def _start_shared_memory(self, *, required: bool) -> None:
        """Make and register the input region (outputs get theirs on first use)."""
        self.shared_memory = True
        try:
            rows = max(1, self.max_batch_size or (self._input.shape[0] or 1))
            size = self._byte_size(self._input, rows)
            self._region(self._input.name, size or 1)
            self._register()
        except Exception as error:
            self._close_regions()
            self.shared_memory = False
            if required:
                raise ModelError(
                    f"{self._where}: shared_memory system: the server does not take this "
                    f"host's shared memory ({_error_text(error)}); is it on another host or "
                    "in a container without the host's /dev/shm? Use shared_memory off"
                ) from error
            warnings.warn(
                f"{self._where}: tensors go over the socket, the server did not take this "
                f"host's shared memory ({_error_text(error)})",
                ModelWarning,
                stacklevel=3,
            )

    @staticmethod
    def _byte_size(info: TensorInfo, rows: int) -> int | None:
        """Bytes of ``rows`` images of a tensor; None when a dimension beyond the batch is not
        fixed."""
        dims = info.shape[1:] if info.shape and info.shape[0] is None else info.shape
        if any(dim is None for dim in dims):
            return None
        return rows * math.prod(dim for dim in dims if dim is not None) * info.dtype.itemsize

    def _region(self, tensor: str, byte_size: int) -> _Region:
        """The region for ``tensor``, at least ``byte_size`` bytes (grown, and so registered
        again, when too small)."""
        region = self._regions.get(tensor)
        if region is not None and region.byte_size >= byte_size:
            return region
        if region is not None:
            self._drop_region(region)
        number = next(_region_numbers)
        name = f"panoptes_{os.getpid()}_{number}"
        key = f"/{name}"
        handle = system_shm.create_shared_memory_region(name, key, byte_size, create_only=True)
        region = _Region(name, key, byte_size, handle)
        self._regions[tensor] = region
        self._registered = False
        return region

    def _register(self) -> None:
        client = self._client()
        for region in self._regions.values():
            # Not registered the first time, nor on a restarted server: nothing to undo then.
            with contextlib.suppress(InferenceServerException):
                client.unregister_system_shared_memory(region.name)
            client.register_system_shared_memory(region.name, region.key, region.byte_size)
        self._registered = True

    def _drop_region(self, region: _Region) -> None:
        # The server may be gone, and its registrations with it.
        with contextlib.suppress(Exception):
            self._client().unregister_system_shared_memory(region.name)
        system_shm.destroy_shared_memory_region(region.handle)

    def _close_regions(self) -> None:
        for region in self._regions.values():
            self._drop_region(region)
        self._regions.clear()
        self._registered = False

    # -- inference ---------------------------------------------------------------------------------

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the NCHW ``batch``: one request, or one per ``max_batch_size`` images; each output
        by name, batch first. Raises :class:`ServerUnavailableError` while the server is away."""
        if self._down_since is not None and time.monotonic() < self._next_try:
            away_s = time.monotonic() - self._down_since
            raise ServerUnavailableError(
                f"{self._where} has not answered for {away_s:.1f} s ({self._last_error}); "
                f"tried again every {RECONNECT_INTERVAL_S:g} s"
            )
        batch = np.ascontiguousarray(batch, dtype=self._input.dtype)
        step = self.max_batch_size or len(batch)
        parts = [
            self._with_retries(
                lambda client, rows=batch[start : start + step]: self._infer(client, rows),
                doing="inference failed",
            )
            for start in range(0, len(batch), step)
        ]
        if len(parts) == 1:
            return dict(parts[0])
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _infer(self, client: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        api = self._api
        image = api.InferInput(self._input.name, list(rows.shape), self._input_datatype)
        requested = [api.InferRequestedOutput(info.name) for info in self.outputs]
        output_regions: dict[str, _Region] = {}
        if self.shared_memory:
            region = self._region(self._input.name, rows.nbytes)
            for info, output in zip(self.outputs, requested, strict=True):
                size = self._byte_size(info, len(rows))
                if size is not None:
                    output_regions[info.name] = self._region(info.name, size)
                    output.set_shared_memory(output_regions[info.name].name, size)
            if not self._registered:
                self._register()
            system_shm.set_shared_memory_region(region.handle, [rows])
            image.set_shared_memory(region.name, rows.nbytes)
        else:
            image.set_data_from_numpy(rows)
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = client.infer(
            self.model_name,
            [image],
            model_version=self.model_version,
            outputs=requested,
            **timeout,
        )
        self.requests += 1
        values: dict[str, np.ndarray] = {}
        for info in self.outputs:
            placed = output_regions.get(info.name)
            if placed is None:
                values[info.name] = result.as_numpy(info.name)
                continue
            described = result.get_output(info.name)
            shape = described["shape"] if isinstance(described, dict) else described.shape
            # A copy: the next request writes over the region.
            values[info.name] = np.array(
                system_shm.get_contents_as_numpy(placed.handle, info.dtype, list(shape))
            )
        return values

    def close(self) -> None:
        """Unregister and free the shared memory, close the connections."""
        self._close_regions()
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # a connection to a server that is gone
                client.close()

    def __repr__(self) -> str:
        memory = ", shared memory" if self.shared_memory else ""
        return f"TritonBackend({self._where}, max_batch_size={self.max_batch_size}{memory})"
