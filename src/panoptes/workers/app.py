"""The HTTP app of a supervisor: one REST API and one ``/metrics`` for all its workers.

The same endpoints as one pipeline's app (``panoptes.server.app``), DeepStream's included, with
each stream's ``worker`` and ``gpu`` in its row and its metrics' labels, and
``GET /api/v1/workers``. A stream added goes to the least loaded worker; a removal goes to the
worker that holds the stream. The live view is not served here: each worker's ``rtsp`` sink
serves its video (port + worker index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from panoptes.core.errors import PipelineError
from panoptes.elements.web_view import HttpProperties
from panoptes.server.app import (
    SOURCE,
    _add,
    _json_body,
    _page,
    _schema_body,
    add_deepstream_routes,
    add_readiness_routes,
)
from panoptes.server.http import AppServer
from panoptes.server.metrics import ElementMetrics, stream_metrics
from panoptes.server.streams import UnknownStreamError
from panoptes.workers.supervisor import Supervisor, WorkerStreamRow

__all__ = ["SupervisorCollector", "create_supervisor_app", "start_supervisor_http"]

_STREAM_LABELS = ("source_id", "name", "worker", "gpu")
_ELEMENT_LABELS = ("element", "kind", "worker")
_WORKER_LABELS = ("worker", "gpu")


def _gpu(value: int | None) -> str:
    return "" if value is None else str(value)


class SupervisorCollector(Collector):
    """The metrics of one pipeline's ``/metrics`` (same names), for every worker's streams and
    elements, labelled with the ``worker`` and ``gpu``; and per worker: up, restarts, streams,
    load, memory and CPU time."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        rows = self.supervisor.rows()
        yield from stream_metrics(
            rows,
            _STREAM_LABELS,
            lambda row: [str(row.source_id), row.name, str(row.worker), _gpu(row.gpu)],
        )
        yield GaugeMetricFamily("panoptes_streams", "Streams listed.", value=len(rows))
        yield GaugeMetricFamily(
            "panoptes_pipeline_uptime_seconds",
            "Seconds since the workers started.",
            value=self.supervisor.elapsed_s(),
        )
        yield from self._workers()

    def _workers(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "panoptes_worker_up", "1 while the worker's process runs.", labels=_WORKER_LABELS
        )
        restarts = CounterMetricFamily(
            "panoptes_worker_restarts",
            "Times the worker was started again after it died.",
            labels=_WORKER_LABELS,
        )
        streams = GaugeMetricFamily(
            "panoptes_worker_streams", "Streams the worker holds.", labels=_WORKER_LABELS
        )
        load = GaugeMetricFamily(
            "panoptes_worker_load_pixels_per_second",
            "Decoded pixels per second of the worker's streams, as last measured.",
            labels=_WORKER_LABELS,
        )
        memory = GaugeMetricFamily(
            "panoptes_worker_resident_memory_bytes",
            "Resident memory of the worker's process.",
            labels=_WORKER_LABELS,
        )
        cpu = CounterMetricFamily(
            "panoptes_worker_cpu_seconds",
            "CPU time of the worker's process (user and system).",
            labels=_WORKER_LABELS,
        )
        elements = ElementMetrics(_ELEMENT_LABELS)
        for info in self.supervisor.workers():
            labels = [str(info.index), _gpu(info.gpu)]
            up.add_metric(labels, float(info.state in ("starting", "running")))
            restarts.add_metric(labels, info.restarts)
            streams.add_metric(labels, len(info.streams))
            load.add_metric(labels, info.load)
            if info.memory_bytes is not None:
                memory.add_metric(labels, info.memory_bytes)
            if info.cpu_s is not None:
                cpu.add_metric(labels, info.cpu_s)
            for element in info.elements:
                elements.add(
                    [element["name"], element["kind"], str(info.index)],
                    element["batches"],
                    element["busy_s"],
                    element["queue_depth"],
                    element["failures"],
                )
        yield from (up, restarts, streams, load, memory, cpu, *elements.families())


def _state(supervisor: Supervisor) -> str:
    if supervisor.finished:
        return "ended"
    return "playing" if supervisor.started else "created"


class _SupervisorCameras:
    """The workers' streams as DeepStream's REST API changes them (``server.app.Cameras``)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def add(self, props: Any, *, camera_id: str | None = None) -> int:
        return self._supervisor.add_source(props, camera_id=camera_id)

    def find_camera(self, camera_id: str | None, camera_url: str | None) -> int:
        return self._supervisor.find_camera(camera_id, camera_url)

    def remove(self, source_id: int) -> None:
        self._supervisor.remove_source(source_id)

    def rows(self) -> Sequence[WorkerStreamRow]:
        return self._supervisor.rows()


def create_supervisor_app(supervisor: Supervisor) -> FastAPI:
    """The HTTP app of ``supervisor``; ``app.state.closing`` as for a pipeline's app."""
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(supervisor))
    ProcessCollector(registry=registry)
    started_s = time.monotonic()
    page = _page()
    app = FastAPI(
        title="panoptes",
        summary="Streams, workers, health and metrics of panoptes worker processes.",
    )
    app.state.closing = threading.Event()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/video.mjpeg", include_in_schema=False)
    @app.get("/snapshot.jpg", include_in_schema=False)
    def no_video() -> Response:
        raise HTTPException(
            404, "with workers, each worker's rtsp sink serves the video (its port + index)"
        )

    @app.get("/api/v1/streams", summary="List the streams of every worker")
    def list_streams() -> dict[str, Any]:
        return {"streams": [row.to_json() for row in supervisor.rows()]}

    @app.get("/api/v1/streams/{source_id}", summary="One stream")
    def get_stream(source_id: int) -> dict[str, Any]:
        try:
            return supervisor.row(source_id).to_json()
        except UnknownStreamError as error:
            raise HTTPException(404, str(error)) from None

    @app.post(
        "/api/v1/streams",
        status_code=201,
        summary="Add a stream on the least loaded worker",
        description="The body is one entry of the config's `sources`.",
        openapi_extra={"requestBody": _schema_body(SOURCE)},
    )
    async def add_stream(request: Request) -> JSONResponse:
        source = await _json_body(request, SOURCE)
        source_id = await run_in_threadpool(_add, _SupervisorCameras(supervisor), source)
        row = (await run_in_threadpool(supervisor.row, source_id)).to_json()
        return JSONResponse(
            row, status_code=201, headers={"Location": f"/api/v1/streams/{source_id}"}
        )

    @app.delete("/api/v1/streams/{source_id}", status_code=204, summary="Remove a stream")
    def delete_stream(source_id: int) -> Response:
        try:
            supervisor.remove_source(source_id)
        except UnknownStreamError as error:
            raise HTTPException(404, str(error)) from None
        except PipelineError as error:
            raise HTTPException(409, str(error)) from None
        return Response(status_code=204)

    @app.get("/api/v1/workers", summary="The workers: GPU, process, streams, load, restarts")
    def list_workers() -> dict[str, Any]:
        workers = []
        for info in supervisor.workers():
            item = asdict(info)
            del item["elements"]
            workers.append(item)
        return {"workers": workers}

    add_deepstream_routes(app, _SupervisorCameras(supervisor))

    @app.get("/api/v1/health", summary="Health")
    def health() -> dict[str, Any]:
        workers = supervisor.workers()
        return {
            "status": "ok",
            "pipeline": _state(supervisor),
            "streams": len(supervisor.rows()),
            "workers": len(workers),
            "workers_running": sum(info.state == "running" for info in workers),
            "uptime_s": time.monotonic() - started_s,
            "pipeline_uptime_s": supervisor.elapsed_s(),
        }

    add_readiness_routes(app, lambda: _state(supervisor), registry)
    return app


def start_supervisor_http(supervisor: Supervisor, props: HttpProperties) -> AppServer:
    """Serve ``supervisor``'s app as the config's ``http`` section says; returns the running
    server."""
    server = AppServer(create_supervisor_app(supervisor), host=props.host, port=props.port)
    server.start()
    return server
