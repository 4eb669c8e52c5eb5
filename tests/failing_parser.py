"""A user parser that fails on every batch, as a broken custom parser would."""

from __future__ import annotations

from typing import Any


def parse(outputs: Any, context: Any) -> Any:
    raise RuntimeError("parser bug: index out of range")
