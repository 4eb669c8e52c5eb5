"""``panoptes inspect``: element kinds and their properties, from the schema itself."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from panoptes.core.registry import KINDS, load_kind


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def list_kinds() -> str:
    lines = ["Element kinds (panoptes inspect KIND shows the properties):", ""]
    for kind in KINDS:
        cls = load_kind(kind)
        module_doc = _first_line(__import__(cls.__module__, fromlist=["_"]).__doc__)
        lines.append(f"  {kind:<12} {module_doc.split(': ', 1)[-1]}")
    return "\n".join(lines)


def _type_name(field: FieldInfo) -> str:
    annotation: Any = field.annotation
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
            return repr(value.model_dump() if isinstance(value, BaseModel) else value)
        return "(required)"
    return repr(field.default)


def describe_properties(model: type[BaseModel], prefix: str = "") -> list[str]:
    lines: list[str] = []
    for name, field in model.model_fields.items():
        if name == "type":
            continue
        lines.append(f"  {prefix}{name}")
        lines.append(f"      type: {_type_name(field)}    default: {_default(field)}")
        if field.description:
            lines.append(f"      {field.description}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.extend(describe_properties(annotation, prefix=f"{prefix}{name}."))
    return lines


def describe_kind(kind: str) -> str:
    cls = load_kind(kind)
    module = __import__(cls.__module__, fromlist=["_"])
    doc = " ".join((module.__doc__ or "").split())
    lines = [f"{kind}: {doc.split(': ', 1)[-1]}", "", "Properties:"]
    lines.extend(describe_properties(cls.Properties))
    return "\n".join(lines)
