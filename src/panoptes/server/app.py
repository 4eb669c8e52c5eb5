"""The HTTP app: a web page with the live view and the streams, the REST API (panoptes's own and
DeepStream's), health, and Prometheus metrics.

The live view is MJPEG (``multipart/x-mixed-replace``) in an ``<img>``: every browser plays it
with no script or player, each picture is shown as soon as it arrives (no group-of-pictures or
segment buffering as with HLS, no signalling as with WebRTC), and it reuses the JPEG pictures of
``/snapshot.jpg``. It costs more bandwidth than H.264: for that, the ``rtsp`` sink serves the
same view compressed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import Any, Literal, Protocol

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from panoptes.config.schema import SourceConfig
from panoptes.core.errors import ConfigError, PipelineError
from panoptes.core.frame import TILED_SOURCE_ID
from panoptes.core.pipeline import Pipeline
from panoptes.server.live_view import LiveView
from panoptes.server.metrics import metrics_registry, render
from panoptes.server.streams import DuplicateCameraError, StreamTable, UnknownStreamError

SAMPLE_INTERVAL_S = 1.0
"""How often the app samples the streams' counters, so that frame rates are measured over the
last seconds even when nobody asks in between."""
BOUNDARY = "frame"
SOURCE: TypeAdapter[Any] = TypeAdapter(SourceConfig)


# -- DeepStream's stream add and remove bodies ---------------------------------------------------


class CameraChange(BaseModel):
    """``value`` of DeepStream's ``/api/v1/stream/add`` and ``/remove`` bodies; fields other
    than these (``creation_time``...) are accepted and ignored, as DeepStream does."""

    model_config = ConfigDict(extra="allow", frozen=True)

    camera_id: str | None = Field(None, min_length=1, description="Unique id of the camera.")
    camera_name: str | None = Field(None, description="Name of the stream; default the id.")
    camera_url: str | None = Field(None, min_length=1, description="URI of the stream.")
    change: str = Field(description="camera_add or camera_remove.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Resolution, codec, framerate: informative."
    )


class CameraAdd(CameraChange):
    camera_id: str = Field(min_length=1, description="Unique id of the camera.")
    camera_url: str = Field(min_length=1, description="URI of the stream.")

    @field_validator("change")
    @classmethod
    def _adds(cls, change: str) -> str:
        if "add" not in change:
            raise ValueError(f"must contain 'add' (camera_add) on stream/add, not {change!r}")
        return change


class CameraRemove(CameraChange):
    @field_validator("change")
    @classmethod
    def _removes(cls, change: str) -> str:
        if "remove" not in change:
            raise ValueError(
                f"must contain 'remove' (camera_remove) on stream/remove, not {change!r}"
            )
        return change

    @model_validator(mode="after")
    def _names_camera(self) -> CameraRemove:
        if self.camera_id is None and self.camera_url is None:
            raise ValueError("give the camera_id the camera was added with, or its camera_url")
        return self


class StreamAddMessage(BaseModel):
    """DeepStream's ``POST /api/v1/stream/add`` body."""

    key: Literal["sensor"] = "sensor"
    value: CameraAdd
    headers: dict[str, Any] = Field(default_factory=dict, description="source, created_at.")


class StreamRemoveMessage(BaseModel):
    """DeepStream's ``POST /api/v1/stream/remove`` body."""

    key: Literal["sensor"] = "sensor"
    value: CameraRemove
    headers: dict[str, Any] = Field(default_factory=dict, description="source, created_at.")


def _ds_reply(reason: str, code: int = 200, extra: dict[str, Any] | None = None) -> JSONResponse:
    """A reply in DeepStream's shape: ``{"reason": ..., "status": "HTTP/1.1 200 OK"}``."""
    phrases = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}
    status = f"HTTP/1.1 {code} {phrases.get(code, '')}".rstrip()
    return JSONResponse({"reason": reason, "status": status, **(extra or {})}, status_code=code)


async def _json_body(request: Request, model: type[BaseModel] | TypeAdapter[Any]) -> Any:
    """The body as ``model``, whatever its Content-Type: DeepStream's examples post JSON with
    curl's default form type."""
    body = await request.body()
    try:
        data = json.loads(body)
    except ValueError as error:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"not JSON: {error}"}]
        ) from None
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    try:
        return adapter.validate_python(data)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False)
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in errors]
        ) from None


class RecordStart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: int = Field(description="The stream to record.")
    before_s: float | None = Field(None, ge=0, description="Seconds before now; default record's.")
    after_s: float | None = Field(None, ge=0, description="Seconds after now; default record's.")


class RecordStop(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: int = Field(description="The stream whose clip ends now.")


# -- the app -------------------------------------------------------------------------------------


def _pipeline_state(pipeline: Pipeline) -> str:
    if pipeline.finished:
        return "ended"
    return "playing" if pipeline.started else "created"


def _page() -> str:
    return resources.files("panoptes.server").joinpath("page.html").read_text(encoding="utf-8")


def create_app(pipeline: Pipeline, view: LiveView | None = None) -> FastAPI:
    """The HTTP app of ``pipeline``; ``view`` is its web-view sink's view (None: no video).

    ``app.state.closing`` (a ``threading.Event``) ends the open MJPEG streams when set, which
    a server sets before it stops.
    """
    table = StreamTable(pipeline)
    registry = metrics_registry(table)
    closing = threading.Event()
    started_s = time.monotonic()
    page = _page()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def sample() -> None:
            failures = 0
            while True:
                try:
                    await run_in_threadpool(table.rows)
                except Exception as error:  # a bug: say so once in a while, keep serving
                    failures += 1
                    if failures <= 3 or failures % 100 == 0:
                        pipeline.bus.error(
                            "http", f"cannot read the streams ({failures} so far): {error!r}"
                        )
                await asyncio.sleep(SAMPLE_INTERVAL_S)

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            closing.set()
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="panoptes",
        summary="Live view, streams, health and metrics of a panoptes pipeline.",
        lifespan=lifespan,
    )
    app.state.closing = closing

    # -- page and video ---------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    def require_view(source_id: int | None) -> LiveView:
        if view is None:
            raise HTTPException(404, "this pipeline has no web-view sink: no video to show")
        known = {TILED_SOURCE_ID, *view.source_ids()}
        known |= {stream.source_id for stream in pipeline.streams()}
        if source_id is not None and source_id not in known:
            raise HTTPException(404, f"no picture of source {source_id}")
        return view

    @app.get("/video.mjpeg", summary="Live view as MJPEG (multipart/x-mixed-replace)")
    def video(
        source_id: int | None = Query(
            None,
            description="A stream's id, or -1 for the tiled view; default the tiled "
            "view, else the first stream.",
        ),
    ) -> StreamingResponse:
        live = require_view(source_id)
        return StreamingResponse(
            _mjpeg(live, source_id, closing),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/snapshot.jpg", summary="The latest picture as JPEG")
    def snapshot(source_id: int | None = Query(None)) -> Response:
        live = require_view(source_id)
        chosen = source_id if source_id is not None else live.default_source()
        picture = None if chosen is None else live.jpeg(chosen)
        if picture is None:
            raise HTTPException(503, "no picture yet", headers={"Retry-After": "1"})
        return Response(
            picture.data, media_type="image/jpeg", headers={"Cache-Control": "no-store"}
        )

    # -- panoptes's REST API ----------------------------------------------------------------------

    @app.get("/api/v1/streams", summary="List the streams")
    def list_streams() -> dict[str, Any]:
        return {"streams": [row.to_json() for row in table.rows()]}

    @app.get("/api/v1/streams/{source_id}", summary="One stream")
    def get_stream(source_id: int) -> dict[str, Any]:
        try:
            return table.row(source_id).to_json()
        except UnknownStreamError as error:
            raise HTTPException(404, str(error)) from None

    @app.post(
        "/api/v1/streams",
        status_code=201,
        summary="Add a stream",
        description="The body is one entry of the config's `sources`: `uri` and optionally "
        "`name`, `real_time`, `loop`, ...",
        openapi_extra={"requestBody": _schema_body(SOURCE)},
    )
    async def add_stream(request: Request) -> JSONResponse:
        source = await _json_body(request, SOURCE)
        source_id = await run_in_threadpool(_add, table, source)
        row = (await run_in_threadpool(table.row, source_id)).to_json()
        return JSONResponse(
            row, status_code=201, headers={"Location": f"/api/v1/streams/{source_id}"}
        )

    @app.delete("/api/v1/streams/{source_id}", status_code=204, summary="Remove a stream")
    def delete_stream(source_id: int) -> Response:
        try:
            table.remove(source_id)
        except UnknownStreamError as error:
            raise HTTPException(404, str(error)) from None
        return Response(status_code=204)

    add_deepstream_routes(app, table)

    # -- health and metrics -----------------------------------------------------------------------

    # -- smart recording ---------------------------------------------------------------------

    def recorder() -> Any:
        for stats in pipeline.element_stats():
            if stats.kind == "record":
                return pipeline.element(stats.name)
        raise HTTPException(404, "this pipeline records nothing: add a `record:` section")

    @app.post("/api/v1/record/start", summary="Record a clip of a stream (smart record)")
    def record_start(body: RecordStart) -> dict[str, Any]:
        from panoptes.media.recorder import RecordError

        element = recorder()
        try:
            path = element.start(
                body.source_id, before_s=body.before_s, after_s=body.after_s, reason="rest"
            )
        except RecordError as error:
            raise HTTPException(409, str(error)) from None
        return {"source_id": body.source_id, "path": str(path)}

    @app.post("/api/v1/record/stop", summary="End a stream's clip now")
    def record_stop(body: RecordStop) -> dict[str, Any]:
        path = recorder().stop(body.source_id)
        if path is None:
            raise HTTPException(404, f"source {body.source_id} is not being recorded")
        return {"source_id": body.source_id, "path": str(path)}

    @app.get("/api/v1/health", summary="Health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "pipeline": _pipeline_state(pipeline),
            "streams": len(table.rows()),
            "uptime_s": time.monotonic() - started_s,
            "pipeline_uptime_s": pipeline.elapsed_s(),
        }

    add_readiness_routes(app, lambda: _pipeline_state(pipeline), registry)
    return app


def add_readiness_routes(
    app: FastAPI, state: Callable[[], str], registry: CollectorRegistry
) -> None:
    """DeepStream's readiness reply (ready while ``state()`` is ``playing``) and ``/metrics``
    from ``registry`` on ``app``."""

    @app.get("/api/v1/health/get-dsready-state", summary="Readiness (DeepStream's reply)")
    def ds_ready() -> JSONResponse:
        ready = "YES" if state() == "playing" else "NO"
        return _ds_reply(
            "GET_DS_READINESS_INFO_SUCCESS", extra={"health-info": {"ds-ready": ready}}
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


def _schema_body(model: type[BaseModel] | TypeAdapter[Any]) -> dict[str, Any]:
    """An OpenAPI request body for an endpoint that reads and validates its body itself."""
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    return {
        "required": True,
        "content": {"application/json": {"schema": adapter.json_schema()}},
    }


class Cameras(Protocol):
    """What DeepStream's REST API changes: a pipeline's stream table, or the streams of all
    worker processes."""

    def add(self, props: Any, *, camera_id: str | None = None) -> int: ...

    def find_camera(self, camera_id: str | None, camera_url: str | None) -> int: ...

    def remove(self, source_id: int) -> None: ...

    def rows(self) -> Sequence[Any]:
        """Rows with ``camera_id``, ``name`` and ``source_id``."""
        ...


def _add(cameras: Cameras, props: Any, camera_id: str | None = None) -> int:
    """Add a source, turning the errors into HTTP ones: 400 for a malformed URI, 409 for a
    camera id in use or a pipeline that ended."""
    try:
        return cameras.add(props, camera_id=camera_id)
    except ConfigError as error:
        raise HTTPException(400, str(error)) from None
    except (DuplicateCameraError, PipelineError) as error:
        raise HTTPException(409, str(error)) from None


def add_deepstream_routes(app: FastAPI, cameras: Cameras) -> None:
    """DeepStream 7's REST API (``/api/v1/stream/add``, ``remove``, ``get-stream-info``) on
    ``app``, changing ``cameras``."""

    @app.post(
        "/api/v1/stream/add",
        summary="Add a camera (DeepStream's body)",
        openapi_extra={"requestBody": _schema_body(StreamAddMessage)},
    )
    async def ds_add(request: Request) -> JSONResponse:
        message: StreamAddMessage = await _json_body(request, StreamAddMessage)
        camera = message.value
        props = {"uri": camera.camera_url, "name": camera.camera_name or camera.camera_id}
        try:
            source_id = await run_in_threadpool(_add, cameras, props, camera.camera_id)
        except HTTPException as error:
            return _ds_reply("STREAM_ADD_FAIL", error.status_code, {"detail": error.detail})
        return _ds_reply(
            "STREAM_ADD_SUCCESS", extra={"source_id": source_id, "camera_id": camera.camera_id}
        )

    @app.post(
        "/api/v1/stream/remove",
        summary="Remove a camera (DeepStream's body)",
        openapi_extra={"requestBody": _schema_body(StreamRemoveMessage)},
    )
    async def ds_remove(request: Request) -> JSONResponse:
        message: StreamRemoveMessage = await _json_body(request, StreamRemoveMessage)
        camera = message.value
        try:
            source_id = await run_in_threadpool(
                cameras.find_camera, camera.camera_id, camera.camera_url
            )
            await run_in_threadpool(cameras.remove, source_id)
        except UnknownStreamError as error:
            return _ds_reply("STREAM_REMOVE_FAIL", 404, {"detail": str(error)})
        return _ds_reply("STREAM_REMOVE_SUCCESS", extra={"source_id": source_id})

    @app.get("/api/v1/stream/get-stream-info", summary="List the cameras (DeepStream's reply)")
    def ds_stream_info() -> JSONResponse:
        info = [
            {"camera_id": row.camera_id, "camera_name": row.name, "source_id": row.source_id}
            for row in cameras.rows()
        ]
        return _ds_reply(
            "GET_LIVE_STREAM_INFO_SUCCESS",
            extra={"stream-info": {"stream-count": len(info), "stream-info": info}},
        )


async def _mjpeg(
    view: LiveView, source_id: int | None, closing: threading.Event
) -> AsyncIterator[bytes]:
    """The parts of an MJPEG stream: each new picture of ``source_id`` (the default source when
    None), at most ``view.max_fps`` a second, until the view or the server closes.

    Each part ends with the next boundary, because browsers show a part once the boundary after
    it arrives: sent at the start of the next part, it would delay every picture by one."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def on_change() -> None:
        # RuntimeError: the loop closed between the stream's end and unsubscribing.
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(changed.set)

    view.subscribe(on_change)
    interval_s = 1.0 / view.max_fps
    sent_seq = -1
    sent_at_s = float("-inf")
    try:
        yield f"--{BOUNDARY}\r\n".encode()
        while not closing.is_set():
            changed.clear()
            chosen = source_id if source_id is not None else view.default_source()
            latest = None if chosen is None else view.latest_seq(chosen)
            if chosen is not None and latest is not None and latest != sent_seq:
                wait_s = sent_at_s + interval_s - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                    continue
                picture = await run_in_threadpool(view.jpeg, chosen)
                if picture is not None and picture.seq != sent_seq:
                    sent_seq, sent_at_s = picture.seq, loop.time()
                    yield (
                        b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n--%s\r\n"
                        % (len(picture.data), picture.data, BOUNDARY.encode())
                    )
                    continue
                # Another client's encoding is still fresh: the newer picture comes shortly.
                await asyncio.sleep(interval_s / 4)
                continue
            if view.closed:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=0.5)
    finally:
        view.unsubscribe(on_change)
