"""The element: a kind, typed properties, and a lifecycle (build, process, drain, close).

Each element runs in its own thread behind a bounded queue (see :mod:`panoptes.core.pipeline`);
the element itself is plain, single-threaded code that turns one batch into the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from panoptes.core.negotiation import CPU_ONLY

if TYPE_CHECKING:
    from panoptes.core.bus import Bus
    from panoptes.core.frame import Batch


class ElementProperties(BaseModel):
    """Base of every element's properties: typed, defaulted, documented, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass
class BuildContext:
    """What an element may need from the pipeline when it is built."""

    bus: Bus
    base_dir: Path = field(default_factory=Path.cwd)
    """Folder that relative paths in the element's properties are resolved from."""
    place: str = ""
    """Where the element's properties sit in the config (``infer[0]``), for error messages."""
    config: Any = None
    """The whole :class:`~panoptes.config.schema.PipelineConfig`, for elements that follow
    another's settings (a snapshot sink draws as the osd does)."""


class Element:
    """Base of the processing elements (everything between the mux and the sinks, and sinks).

    Subclasses set ``kind`` and ``Properties`` and override the lifecycle methods they need.
    ``process`` returns the batch to pass on, or None to pass nothing (sinks, or a batch held back
    until ``drain``).
    """

    kind: ClassVar[str]
    Properties: ClassVar[type[ElementProperties]]
    is_sink: ClassVar[bool] = False
    takes_video: ClassVar[bool] = False
    """A video sink (file, RTSP): fed after the tiler and osd, which run only when one exists."""
    memory: ClassVar[frozenset[str]] = CPU_ONLY
    """The kinds of memory whose frames this element takes (see :mod:`panoptes.core.negotiation`):
    ``{"cpu"}``, numpy BGR images, by default; ``{"cuda"}`` for device tensors only; both
    (``ANY_MEMORY``) for an element that handles either, or reads no pixels at all (metadata
    sinks, the tracker, analytics), so that no download is inserted before it. Where frames
    may arrive in another kind, the pipeline inserts a converter before the element at build."""
    output_memory: ClassVar[str | None] = None
    """The kind of memory of the images this element puts out, when it replaces them with new
    ones in a kind of its own (a converter); None: frames leave in the memory they came in."""

    def input_memory(self) -> frozenset[str]:
        """The kinds of memory this element takes, once built: :attr:`memory` unless its
        properties decide (an ``infer`` whose backend takes numpy arrays or device tensors)."""
        return self.memory

    @property
    def preferred_batch(self) -> int:
        """Frames per batch this element needs to keep busy (the mux's default batch size
        is at least this)."""
        return 1

    def __init__(self, props: ElementProperties, *, name: str, context: BuildContext) -> None:
        self.props = props
        self.name = name
        self.context = context
        self.failures = 0
        """Batches this element failed on (see :meth:`report_failure`)."""

    @property
    def bus(self) -> Bus:
        return self.context.bus

    def report_failure(self, batch: Batch, error: Exception) -> None:
        """Count a failure on ``batch`` and say so on the bus: the first three, then every 100th,
        so that a model failing on every frame does not flood the console."""
        self.failures += 1
        if self.failures <= 3 or self.failures % 100 == 0:
            self.bus.error(
                self.name,
                f"failed on batch {batch.batch_num} ({self.failures} so far): {error!r}",
                exception=error,
            )

    def build(self) -> None:
        """Validate and open resources (models, files). Raise a typed error with the place."""

    def process(self, batch: Batch) -> Batch | None:
        return batch

    @property
    def pending(self) -> bool:
        """Whether a batch is held back; the pipeline then calls :meth:`flush` as soon as no
        further batch is waiting, so holding back never adds latency on an idle pipeline."""
        return False

    def flush(self) -> list[Batch]:
        """Return the batches held back (see :attr:`pending`)."""
        return []

    def drain(self) -> list[Batch]:
        """End of stream: return what is still held back. Called once, before close."""
        return []

    def close(self) -> None:
        """Release resources. Called once, also after a failed build or run."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.kind})>"
