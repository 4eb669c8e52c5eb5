"""``web-view``: keeps the latest drawn pictures for the live view of the HTTP server's page.

This module also holds the config's ``http`` section, which configures that server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.frame import Batch

if TYPE_CHECKING:
    # Imported when the sink is built: the schema imports this module for its properties, and
    # validating a config need not load the web server.
    from panoptes.server.live_view import LiveView


class WebViewProperties(ElementProperties):
    type: Literal["web-view"] = Field("web-view", description="Element kind.")
    name: str | None = Field(None, description="Element name.")
    max_fps: float = Field(
        15.0, gt=0, description="Most pictures per second sent to each browser watching."
    )
    jpeg_quality: int = Field(80, ge=1, le=100, description="JPEG quality of the pictures.")
    width: int | None = Field(
        None,
        ge=16,
        description="Scale pictures wider than this down to this width (keeping the aspect "
        "ratio) before sending them; null = as drawn.",
    )


class HttpProperties(BaseModel):
    """The HTTP server: a web page with the live view and the streams, a REST API to list, add
    and remove streams (also DeepStream's), health, and Prometheus metrics at ``/metrics``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("0.0.0.0", description="Address to listen on; 127.0.0.1 = this machine only.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 = any free port.")
    view: bool = Field(
        True, description="Show the drawn video on the page (adds a web-view sink if none)."
    )
    max_fps: float = Field(15.0, gt=0, description="Most pictures per second sent to a browser.")
    jpeg_quality: int = Field(80, ge=1, le=100, description="JPEG quality of the live view.")

    def web_view_sink(self) -> WebViewProperties:
        """The web-view sink these settings ask for (added to the sinks when ``view`` is set
        and the config has no web-view sink of its own)."""
        return WebViewProperties(max_fps=self.max_fps, jpeg_quality=self.jpeg_quality)


class WebView(Element):
    """Hands every frame it gets to a :class:`~panoptes.server.live_view.LiveView` (``view``),
    which keeps the latest picture per ``source_id`` and encodes it to JPEG only when a browser
    asks: a view nobody watches costs one reference per frame.

    A video sink: after a tiler it gets the tiled picture (``source_id`` ``TILED_SOURCE_ID``),
    without one each stream's drawn frames. The HTTP server finds the view with
    :func:`panoptes.server.find_view`.
    """

    kind = "web-view"
    Properties = WebViewProperties
    is_sink = True
    takes_video = True

    props: WebViewProperties
    view: LiveView

    def build(self) -> None:
        from panoptes.server.live_view import LiveView

        self.view = LiveView(
            max_fps=self.props.max_fps,
            jpeg_quality=self.props.jpeg_quality,
            width=self.props.width,
        )

    def process(self, batch: Batch) -> None:
        for frame in batch.frames:
            # The image is the branch's own, drawn and never changed after the osd, so the view
            # keeps a reference instead of a copy.
            self.view.publish(frame.source_id, frame.image)
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self.view.forget(event.source_id)
        return None

    def close(self) -> None:
        view = getattr(self, "view", None)
        if view is not None:
            view.close()
