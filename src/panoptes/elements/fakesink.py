"""``fakesink``: takes every batch and does nothing with it (for benchmarks)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.frame import Batch
from panoptes.core.negotiation import ANY_MEMORY


class FakeSinkProperties(ElementProperties):
    type: Literal["fakesink"] = Field("fakesink", description="Element kind.")
    name: str | None = Field(None, description="Element name.")


class FakeSink(Element):
    kind = "fakesink"
    Properties = FakeSinkProperties
    is_sink = True
    memory = ANY_MEMORY  # reads nothing: frames may stay on the GPU

    def process(self, batch: Batch) -> None:
        return None
