"""DeepStream's nvinferserver configuration (protobuf text format) read into the ``infer``
element's properties: the model served by a Triton server (``backend: triton``), with the same
pre-processing and parsers as nvinfer's files get.

The file is a ``PluginControl`` message in protobuf's text format::

    infer_config {
      unique_id: 1
      max_batch_size: 8
      backend { triton { model_name: "yolox_nano" version: -1 grpc { url: "localhost:8001" } } }
      preprocess {
        network_format: IMAGE_FORMAT_BGR
        tensor_order: TENSOR_ORDER_LINEAR
        maintain_aspect_ratio: 1
        normalize { scale_factor: 1.0 channel_offsets: [0, 0, 0] }
      }
      postprocess {
        labelfile_path: "labels.txt"
        detection { num_detected_classes: 80 nms { confidence_threshold: 0.3 iou_threshold: 0.45 } }
      }
    }
    input_control { process_mode: PROCESS_MODE_FULL_FRAME interval: 0 }
    output_control { output_tensor_meta: false }

NVIDIA's ``.proto`` files that define these messages come under a proprietary licence and are not
shipped, so protobuf's own ``text_format`` cannot be used: :func:`parse_text_format` is a small
reader of the text format itself (fields, nested messages, lists, strings, numbers, enum names,
comments), and :data:`FIELDS` says what panoptes does with each field. Every field that is not
honoured as it is gets a note (:class:`~panoptes.config.deepstream.translate.Note`); a malformed
value raises :class:`ConfigError` placed at ``file:line field.path``.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from panoptes.config.deepstream.keyfile import resolve_path
from panoptes.core.errors import ConfigError

if TYPE_CHECKING:
    from panoptes.config.deepstream.translate import Note

__all__ = [
    "FIELDS",
    "Name",
    "TextField",
    "TextMessage",
    "field_table_markdown",
    "parse_text_format",
    "read_nvinferserver_config",
]

_logger = logging.getLogger("panoptes.config.deepstream")

# -- the text format -----------------------------------------------------------------------------


class Name(str):
    """An unquoted identifier in the text: an enum value (``IMAGE_FORMAT_RGB``)."""

    __slots__ = ()


Scalar = str | int | float | bool


@dataclass
class TextField:
    """One ``name: value`` or ``name { ... }`` of a message; a list gives one field per item."""

    name: str
    value: Scalar | TextMessage
    line: int


@dataclass
class TextMessage:
    """A message: its fields in file order (a repeated field appears once per value)."""

    fields: list[TextField] = field(default_factory=list)
    line: int = 1

    def all(self, name: str) -> list[TextField]:
        return [item for item in self.fields if item.name == name]

    def last(self, name: str) -> TextField | None:
        """The field ``name`` (the last one, as protobuf keeps for a singular field)."""
        found = self.all(name)
        return found[-1] if found else None

    def __contains__(self, name: object) -> bool:
        return any(item.name == name for item in self.fields)


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fF]?)
    | (?P<name>-?[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<punct>[{}\[\]<>:,;])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: Literal["string", "number", "name", "punct", "end"]
    text: str
    line: int


def _tokens(text: str, file: str) -> list[_Token]:
    tokens: list[_Token] = []
    line, position = 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConfigError(f"unexpected character {text[position]!r}", f"{file}:{line}")
        kind = match.lastgroup or "space"
        if kind != "space":
            tokens.append(_Token(kind, match.group(), line))  # type: ignore[arg-type]
        line += match.group().count("\n")
        position = match.end()
    tokens.append(_Token("end", "end of file", line))
    return tokens


class _Parser:
    """Recursive descent over the tokens: message := field*; field := name [":"] value [, ;]."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.tokens = _tokens(text, file)
        self.index = 0

    def error(self, message: str, token: _Token) -> ConfigError:
        return ConfigError(message, f"{self.file}:{token.line}")

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text:
            raise self.error(f"expected {text!r}, found {token.text!r}", token)
        return token

    def at(self, text: str) -> bool:
        """Whether the next token is the punctuation ``text``."""
        token = self.peek()
        return token.kind == "punct" and token.text == text

    def message(self, end: str | None, line: int) -> TextMessage:
        """Fields up to the closing ``end`` (taken), or to the end of the file for None."""
        message = TextMessage(line=line)
        while not (self.at(end) if end else self.peek().kind == "end"):
            token = self.take()
            if token.kind == "end":
                raise self.error(f"expected {end!r} to close the message of line {line}", token)
            if token.kind != "name":
                raise self.error(f"expected a field name, found {token.text!r}", token)
            message.fields.extend(self.field_values(token))
            if self.at(",") or self.at(";"):
                self.take()
        if end:
            self.take()
        return message

    def field_values(self, name: _Token) -> list[TextField]:
        """The value(s) after a field's name: a message, a list (one field per item), a scalar."""
        colon = self.at(":")
        if colon:
            self.take()
        if self.at("{") or self.at("<"):
            return [TextField(name.text, self.nested(), name.line)]
        if self.at("["):
            self.take()
            return self.list_items(name)
        if not colon:
            raise self.error(f"expected ':' after {name.text}", self.peek())
        return [TextField(name.text, self.scalar(), name.line)]

    def nested(self) -> TextMessage:
        opening = self.take()
        return self.message("}" if opening.text == "{" else ">", opening.line)

    def list_items(self, name: _Token) -> list[TextField]:
        items: list[TextField] = []
        while not self.at("]"):
            line = self.peek().line
            value = self.nested() if self.at("{") or self.at("<") else self.scalar()
            items.append(TextField(name.text, value, line))
            if self.at(","):
                self.take()
            elif not self.at("]"):
                raise self.error(f"expected ',' or ']' in the list {name.text}", self.peek())
        self.take()
        return items

    def scalar(self) -> Scalar:
        token = self.take()
        if token.kind == "string":
            text = self.string(token)
            while self.peek().kind == "string":  # "ab" "cd" is "abcd", as in C
                text += self.string(self.take())
            return text
        if token.kind == "number":
            if re.fullmatch(r"-?0[xX][0-9a-fA-F]+", token.text):
                return int(token.text, 16)
            if re.fullmatch(r"-?\d+", token.text):
                return int(token.text)
            return float(token.text.rstrip("fF"))
        if token.kind == "name":
            lowered = token.text.lower()
            if lowered in ("true", "t"):
                return True
            if lowered in ("false", "f"):
                return False
            if lowered.lstrip("-") in ("inf", "infinity", "nan"):
                return float(lowered)
            return Name(token.text)
        raise self.error(f"expected a value, found {token.text!r}", token)

    def string(self, token: _Token) -> str:
        try:
            value = ast.literal_eval(token.text)
        except (ValueError, SyntaxError) as error:
            raise self.error(f"malformed string {token.text}: {error}", token) from error
        return str(value)


def parse_text_format(text: str, file: str = "<text>") -> TextMessage:
    """The message in ``text`` (protobuf's text format); ConfigError at ``file:line``."""
    return _Parser(text, file).message(None, 1)


# -- what panoptes does with each field ----------------------------------------------------------

Status = Literal["honoured", "approximated", "unsupported"]
NoteStatus = Literal["approximated", "unsupported", "unknown"]
H: Status = "honoured"
A: Status = "approximated"
U: Status = "unsupported"

#: Every field panoptes knows, by its path from the top (``infer_config.backend.triton.version``),
#: with what is done with it. A message's entry covers the fields under it that have none.
FIELDS: dict[str, tuple[Status, str]] = {
    "infer_config.unique_id": (H, "infer gie_id"),
    "infer_config.gpu_ids": (A, "the server's model configuration places the model"),
    "infer_config.max_batch_size": (
        A,
        "the batch comes from the mux; requests carry up to the served model's max_batch_size",
    ),
    "infer_config.backend.triton": (H, "backend triton"),
    "infer_config.backend.trt_is": (H, "backend triton (trt_is is triton's old name)"),
    "infer_config.backend.triton.model_name": (H, "infer model_name"),
    "infer_config.backend.triton.version": (H, "infer model_version (-1: the latest)"),
    "infer_config.backend.triton.grpc.url": (H, "infer url, protocol grpc"),
    "infer_config.backend.triton.grpc.enable_cuda_buffer_sharing": (
        A,
        "frames are on the host: tensors go through system shared memory to a server on this "
        "host (shared_memory auto)",
    ),
    "infer_config.backend.triton.model_repo": (
        A,
        "no Triton runs inside panoptes: the repository's ONNX model (root/model_name/version/"
        "model.onnx) runs in onnxruntime; serve the repository with tritonserver and give grpc "
        "{ url } to use Triton",
    ),
    "infer_config.backend.triton.class_params": (U, "Triton's own classification is not used"),
    "infer_config.backend.inputs": (A, "the input comes from the served model's metadata"),
    "infer_config.backend.outputs": (A, "every output is read"),
    "infer_config.backend.output_mem_type": (A, "outputs come to the host"),
    "infer_config.backend.disable_warmup": (A, "no warm-up requests are sent"),
    "infer_config.preprocess.network_format": (
        H,
        "preprocess.color_order (RGB, BGR; GRAY is refused; MEDIA_FORMAT_NONE: the parser's)",
    ),
    "infer_config.preprocess.tensor_order": (H, "NCHW (TENSOR_ORDER_LINEAR); NHWC is refused"),
    "infer_config.preprocess.tensor_name": (A, "the model's one image input"),
    "infer_config.preprocess.maintain_aspect_ratio": (H, "preprocess.keep_ratio"),
    "infer_config.preprocess.symmetric_padding": (
        H,
        "preprocess.pad_position center (else top-left)",
    ),
    "infer_config.preprocess.frame_scaling_hw": (A, "scaling runs on the CPU"),
    "infer_config.preprocess.frame_scaling_filter": (A, "bilinear scaling"),
    "infer_config.preprocess.normalize.scale_factor": (H, "preprocess.std = 1 / scale_factor"),
    "infer_config.preprocess.normalize.channel_offsets": (H, "preprocess.mean"),
    "infer_config.preprocess.normalize.mean_file": (U, "mean images are not read"),
    "infer_config.postprocess.labelfile_path": (H, "infer labels (relative to this file)"),
    "infer_config.postprocess.detection": (H, "network_type detector"),
    "infer_config.postprocess.detection.num_detected_classes": (
        A,
        "the class count comes from the model's outputs",
    ),
    "infer_config.postprocess.detection.per_class_params": (
        H,
        "infer class_thresholds (pre_threshold)",
    ),
    "infer_config.postprocess.detection.custom_parse_bbox_func": (
        A,
        "known C parsers map to the built-in parser for the model's outputs; "
        "python:module:function names a Python parser",
    ),
    "infer_config.postprocess.detection.nms.confidence_threshold": (H, "infer threshold"),
    "infer_config.postprocess.detection.nms.iou_threshold": (H, "infer nms_iou"),
    "infer_config.postprocess.detection.nms.topk": (H, "infer topk (0: all)"),
    "infer_config.postprocess.detection.dbscan": (A, "NMS instead of DBSCAN"),
    "infer_config.postprocess.detection.dbscan.pre_threshold": (H, "infer threshold"),
    "infer_config.postprocess.detection.group_rectangle": (A, "NMS instead of grouping"),
    "infer_config.postprocess.detection.group_rectangle.confidence_threshold": (
        H,
        "infer threshold",
    ),
    "infer_config.postprocess.detection.simple_cluster.threshold": (
        H,
        "infer threshold, no clustering (nms_iou 1)",
    ),
    "infer_config.postprocess.classification": (
        A,
        "network_type classifier, which runs on onnxruntime only: on a Triton server it is "
        "refused when the pipeline is built (a local model_repo's ONNX file runs)",
    ),
    "infer_config.postprocess.classification.threshold": (H, "infer classifier_threshold"),
    "infer_config.postprocess.classification.custom_parse_classifier_func": (
        A,
        "the best class of each output",
    ),
    "infer_config.postprocess.other": (H, "network_type other (tensor meta for a probe)"),
    "infer_config.postprocess.other.type_name": (A, "not used"),
    "infer_config.postprocess.segmentation": (U, "segmentation is not supported"),
    "infer_config.postprocess.triton_classification": (
        U,
        "Triton's own classification is not used; give classification { }",
    ),
    "infer_config.postprocess.trtis_classification": (
        U,
        "Triton's own classification is not used; give classification { }",
    ),
    "infer_config.custom_lib": (A, "C libraries are not loaded: the parsers are built in"),
    "infer_config.extra": (A, "panoptes' own buffers and processing"),
    "infer_config.input_tensor_from_meta": (U, "no pre-process element"),
    "infer_config.lstm": (U, "LSTM loops are not supported"),
    "infer_config.clip_object_outside_roi": (U, "no pre-process element"),
    "input_control.process_mode": (
        H,
        "infer process_mode (FULL_FRAME primary, CLIP_OBJECTS secondary)",
    ),
    "input_control.operate_on_gie_id": (H, "infer operate_on_gie_id"),
    "input_control.operate_on_class_ids": (H, "infer operate_on_class_ids"),
    "input_control.interval": (H, "infer interval"),
    "input_control.async_mode": (A, "classification runs in the pipeline's own thread"),
    "input_control.object_control.bbox_filter.min_width": (H, "infer input_object_min_width"),
    "input_control.object_control.bbox_filter.min_height": (H, "infer input_object_min_height"),
    "input_control.object_control.bbox_filter.max_width": (H, "infer input_object_max_width"),
    "input_control.object_control.bbox_filter.max_height": (H, "infer input_object_max_height"),
    "output_control.output_tensor_meta": (H, "infer output_tensor_meta"),
    "output_control.detect_control.default_filter.bbox_filter": (H, "infer box_limits"),
    "output_control.detect_control.default_filter.roi_top_offset": (
        H,
        "infer box_limits.top_margin",
    ),
    "output_control.detect_control.default_filter.roi_bottom_offset": (
        H,
        "infer box_limits.bottom_margin",
    ),
    "output_control.detect_control.default_filter.border_color": (
        A,
        "boxes are drawn in the osd's class colours",
    ),
    "output_control.detect_control.default_filter.bg_color": (
        A,
        "boxes are drawn in the osd's class colours",
    ),
    "output_control.detect_control.specific_class_filters": (
        H,
        "infer class_box_limits (colours: the osd's)",
    ),
    "output_control.classifier_type": (A, "classifications are known by the model's gie_id"),
}

# Messages read field by field (each field has its own entry in FIELDS).
_MESSAGES = {
    "infer_config",
    "infer_config.backend",
    "infer_config.backend.triton.grpc",
    "infer_config.preprocess",
    "infer_config.preprocess.normalize",
    "infer_config.postprocess",
    "infer_config.postprocess.detection.nms",
    "infer_config.postprocess.detection.simple_cluster",
    "input_control",
    "input_control.object_control",
    "input_control.object_control.bbox_filter",
    "output_control",
    "output_control.detect_control",
    "output_control.detect_control.default_filter",
}

# Honoured messages read as a whole (maps, box filters): no entry for each field inside.
_WHOLE = {
    "infer_config.postprocess.detection.per_class_params",
    "output_control.detect_control.default_filter.bbox_filter",
    "output_control.detect_control.specific_class_filters",
}


def field_table_markdown() -> str:
    """The table of every field and what panoptes does with it (docs/triton.md)."""
    lines = ["| field | panoptes | what is done |", "| --- | --- | --- |"]
    for path, (status, text) in FIELDS.items():
        lines.append(f"| `{path}` | {status} | {text} |")
    return "\n".join(lines) + "\n"


# -- the translation -----------------------------------------------------------------------------

_COLOR_ORDERS = {"IMAGE_FORMAT_RGB": "rgb", "IMAGE_FORMAT_BGR": "bgr"}
_PROCESS_MODES = {
    "PROCESS_MODE_DEFAULT": "primary",
    "PROCESS_MODE_FULL_FRAME": "primary",
    "PROCESS_MODE_CLIP_OBJECTS": "secondary",
}


def read_nvinferserver_config(
    path: str | os.PathLike[str], *, notes: list[Note] | None = None
) -> dict[str, Any] | None:
    """The infer element's properties (a dict of the native schema) for an nvinferserver file;
    None when the model cannot run here (segmentation), a note saying why.

    Each field that is not honoured as it is gets a
    :class:`~panoptes.config.deepstream.translate.Note` appended to ``notes``
    (``config_triton.txt:14 infer_config.gpu_ids: approximated: ...``); without ``notes`` they
    are logged as warnings. A malformed file or value raises :class:`ConfigError` placed at
    ``file:line field.path``.
    """
    from panoptes.config.deepstream.translate import Note

    found: list[Note] = []
    infer = _Reader(Path(path), found, Note).read()
    if notes is None:
        for note in found:
            _logger.warning("%s", note)
    else:
        notes.extend(found)
    return infer


class _Reader:
    def __init__(self, path: Path, notes: list[Note], note_type: type[Note]) -> None:
        self.path = path
        self.file = path.name
        self.notes = notes
        self._note_type = note_type

    def note(self, status: NoteStatus, place: str, text: str) -> None:
        self.notes.append(self._note_type(status, place, text))

    def place(self, item: TextField | TextMessage, path: str) -> str:
        return f"{self.file}:{item.line} {path}"

    def place_of(self, message: TextMessage, name: str, path: str) -> str:
        """The place of field ``name`` of ``message`` (of the message when it has none)."""
        found = message.last(name)
        return self.place(found or message, f"{path}.{name}")

    # -- bookkeeping ---------------------------------------------------------------------------

    def account(self, message: TextMessage, path: str) -> None:
        """A note for every field under ``message`` that is not honoured as it is: one for a
        whole message that is not (its fields are not looked at), one for each unknown field."""
        for item in message.fields:
            where = f"{path}.{item.name}" if path else item.name
            status = FIELDS.get(where)
            if status is not None and status[0] != H:
                kind: NoteStatus = "approximated" if status[0] == A else "unsupported"
                self.note(kind, self.place(item, where), status[1])
            elif isinstance(item.value, TextMessage) and where in _MESSAGES | FIELDS.keys():
                if where not in _WHOLE:
                    self.account(item.value, where)
            elif status is None:
                self.note("unknown", self.place(item, where), "unknown field, not used")

    # -- typed values --------------------------------------------------------------------------

    def value(self, message: TextMessage, name: str, path: str, kind: type) -> Any:
        item = message.last(name)
        if item is None:
            return None
        value = item.value
        where = self.place(item, f"{path}.{name}")
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            return int(value)
        if kind is bool and isinstance(value, int):
            return bool(value)
        if kind is Name and isinstance(value, Name | int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str) and not isinstance(value, Name):
            return value
        if kind is TextMessage and isinstance(value, TextMessage):
            return value
        if isinstance(value, kind) and not isinstance(value, bool | Name):
            return value
        described = "a message" if isinstance(value, TextMessage) else repr(value)
        wanted = {
            float: "a number",
            int: "an integer",
            bool: "true or false",
            str: "a quoted string",
            Name: "an enum name",
            TextMessage: "a message { ... }",
        }[kind]
        raise ConfigError(f"expected {wanted}, found {described}", where)

    def message(self, parent: TextMessage, name: str, path: str) -> TextMessage | None:
        found: TextMessage | None = self.value(parent, name, path, TextMessage)
        return found

    # -- the file ------------------------------------------------------------------------------

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"cannot read the nvinferserver config: {error}", str(self.path)
            ) from error
        top = parse_text_format(text, self.file)
        self.account(top, "")
        config = self.message(top, "infer_config", "")
        if config is None:
            raise ConfigError("no infer_config { ... }: not an nvinferserver config", self.file)
        infer: dict[str, Any] = {}
        unique_id = self.value(config, "unique_id", "infer_config", int)
        if unique_id:
            infer["gie_id"] = unique_id
        self._backend(config, infer)
        if not self._postprocess(config, infer):
            return None
        preprocess = self.message(config, "preprocess", "infer_config")
        if preprocess is not None:
            infer["preprocess"] = self._preprocess(preprocess)
        self._input_control(top, infer)
        self._output_control(top, infer)
        return infer

    def _backend(self, config: TextMessage, infer: dict[str, Any]) -> None:
        backend = self.message(config, "backend", "infer_config")
        if backend is None:
            raise ConfigError("infer_config has no backend { triton { ... } }", self.file)
        name = "triton" if "triton" in backend else "trt_is"
        path = f"infer_config.backend.{name}"
        triton = self.message(backend, name, "infer_config.backend")
        if triton is None:
            raise ConfigError("backend has no triton { ... }", self.place(backend, path))
        model_name = self.value(triton, "model_name", path, str)
        if not model_name:
            raise ConfigError("triton needs its model_name", self.place(triton, path))
        version = self.value(triton, "version", path, int)
        grpc = self.message(triton, "grpc", path)
        repository = self.message(triton, "model_repo", path)
        if grpc is not None:
            url = self.value(grpc, "url", f"{path}.grpc", str)
            if not url:
                raise ConfigError("grpc needs its url", self.place_of(grpc, "grpc", path))
            infer.update(
                backend="triton",
                model=model_name,
                model_name=model_name,
                url=url,
                protocol="grpc",
            )
            if version is not None and version > 0:
                infer["model_version"] = version
            return
        if repository is not None:
            infer["model"] = self._repository_model(repository, model_name, version, path)
            return
        raise ConfigError(
            "triton has neither grpc { url } nor model_repo { root }", self.place(triton, path)
        )

    def _repository_model(
        self, repository: TextMessage, model_name: str, version: int | None, path: str
    ) -> str:
        """The ONNX file of ``model_name`` in a Triton model repository, for onnxruntime."""
        where = self.place_of(repository, "model_repo", path)
        roots = [item.value for item in repository.all("root") if isinstance(item.value, str)] or [
            ""
        ]
        for root in roots:
            folder = Path(resolve_path(root, self.path)) / model_name
            versions = sorted(
                (int(entry.name) for entry in folder.glob("*") if entry.name.isdigit()),
                reverse=True,
            )
            chosen = [version] if version is not None and version > 0 else versions
            for number in chosen:
                candidate = folder / str(number) / "model.onnx"
                if candidate.is_file():
                    return str(candidate)
        raise ConfigError(
            f"model_repo: no Triton runs inside panoptes, and {model_name} has no model.onnx in "
            f"{', '.join(map(str, roots))}; serve the repository with tritonserver "
            "(--model-repository) and give backend { triton { grpc { url } } }",
            where,
        )

    def _preprocess(self, preprocess: TextMessage) -> dict[str, Any]:
        path = "infer_config.preprocess"
        out: dict[str, Any] = {}
        color = self.value(preprocess, "network_format", path, Name)
        if color is not None:
            if str(color) in ("IMAGE_FORMAT_GRAY", "3"):
                raise ConfigError(
                    "grey (IMAGE_FORMAT_GRAY) models are not supported",
                    self.place_of(preprocess, "network_format", path),
                )
            order = _COLOR_ORDERS.get(str(color)) or {1: "rgb", 2: "bgr"}.get(
                color if isinstance(color, int) else -1
            )
            if order is not None:
                out["color_order"] = order
        tensor_order = self.value(preprocess, "tensor_order", path, Name)
        if str(tensor_order) in ("TENSOR_ORDER_NHWC", "2"):
            raise ConfigError(
                "NHWC input is not supported: export the model with NCHW input "
                "(TENSOR_ORDER_LINEAR)",
                self.place_of(preprocess, "tensor_order", path),
            )
        keep_ratio = self.value(preprocess, "maintain_aspect_ratio", path, int)
        out["keep_ratio"] = bool(keep_ratio)
        symmetric = self.value(preprocess, "symmetric_padding", path, int)
        out["pad_position"] = "center" if symmetric else "top-left"
        out["pad_value"] = 0.0  # nvinferserver pads with black
        normalize = self.message(preprocess, "normalize", path)
        scale, offsets = 1.0, [0.0, 0.0, 0.0]
        if normalize is not None:
            where = f"{path}.normalize"
            scale = self.value(normalize, "scale_factor", where, float) or 1.0
            values = [item.value for item in normalize.all("channel_offsets")]
            if values:
                if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                    raise ConfigError(
                        "channel_offsets are numbers",
                        self.place_of(normalize, "channel_offsets", where),
                    )
                offsets = [float(v) for v in values]  # type: ignore[arg-type]
                if len(offsets) == 1:
                    offsets *= 3
                if len(offsets) != 3:
                    raise ConfigError(
                        f"expected 3 channel_offsets, got {len(offsets)}",
                        self.place_of(normalize, "channel_offsets", where),
                    )
        if scale <= 0:
            raise ConfigError(f"scale_factor must be positive, got {scale}", path)
        out["mean"] = offsets
        out["std"] = [1.0 / scale] * 3
        return out

    def _postprocess(self, config: TextMessage, infer: dict[str, Any]) -> bool:
        path = "infer_config.postprocess"
        post = self.message(config, "postprocess", "infer_config")
        if post is None:
            infer["network_type"] = "other"
            return True
        labels = self.value(post, "labelfile_path", path, str)
        if labels:
            infer["labels"] = _local(resolve_path(labels, self.path))
        for kind in ("segmentation", "triton_classification", "trtis_classification"):
            item = post.last(kind)
            if item is not None:
                self.note(
                    "unsupported",
                    self.place(item, f"{path}.{kind}"),
                    f"{FIELDS[f'{path}.{kind}'][1]}; the model is left out",
                )
                return False
        detection = self.message(post, "detection", path)
        classification = self.message(post, "classification", path)
        if classification is not None:
            infer["network_type"] = "classifier"
            threshold = self.value(classification, "threshold", f"{path}.classification", float)
            if threshold is not None:
                infer["classifier_threshold"] = threshold
        elif detection is not None:
            infer["network_type"] = "detector"
            self._detection(detection, infer)
        else:
            infer["network_type"] = "other"
        return True

    def _detection(self, detection: TextMessage, infer: dict[str, Any]) -> None:
        from panoptes.config.deepstream.translate import KNOWN_PARSERS

        path = "infer_config.postprocess.detection"
        parser = self.value(detection, "custom_parse_bbox_func", path, str)
        if parser and parser.startswith("python:"):
            infer["parser"] = parser
        elif parser and parser not in KNOWN_PARSERS:
            self.note(
                "approximated",
                self.place_of(detection, "custom_parse_bbox_func", path),
                f"{parser} is not a parser panoptes knows by name: the built-in parser for the "
                "model's outputs is used (name a Python one as python:module:function)",
            )
        thresholds: dict[int, float] = {}
        for item in detection.all("per_class_params"):
            entry = item.value
            where = self.place(item, f"{path}.per_class_params")
            if not isinstance(entry, TextMessage):
                raise ConfigError("expected { key: N value { pre_threshold: X } }", where)
            key = self.value(entry, "key", f"{path}.per_class_params", int)
            value = self.message(entry, "value", f"{path}.per_class_params")
            if key is None or value is None:
                raise ConfigError("expected { key: N value { pre_threshold: X } }", where)
            threshold = self.value(value, "pre_threshold", f"{path}.per_class_params.value", float)
            if threshold is not None:
                thresholds[key] = threshold
        if thresholds:
            infer["class_thresholds"] = thresholds
        for method, key in (
            ("nms", "confidence_threshold"),
            ("dbscan", "pre_threshold"),
            ("group_rectangle", "confidence_threshold"),
            ("simple_cluster", "threshold"),
        ):
            cluster = self.message(detection, method, path)
            if cluster is None:
                continue
            threshold = self.value(cluster, key, f"{path}.{method}", float)
            if threshold is not None:
                infer["threshold"] = threshold
            if method == "nms":
                iou = self.value(cluster, "iou_threshold", f"{path}.nms", float)
                if iou is not None:
                    infer["nms_iou"] = iou
                topk = self.value(cluster, "topk", f"{path}.nms", int)
                if topk:
                    infer["topk"] = topk
            elif method == "simple_cluster":
                infer["nms_iou"] = 1.0  # a threshold alone: NMS that keeps every box

    def _input_control(self, top: TextMessage, infer: dict[str, Any]) -> None:
        path = "input_control"
        control = self.message(top, "input_control", "")
        if control is None:
            return
        mode = self.value(control, "process_mode", path, Name)
        if mode is not None:
            chosen = _PROCESS_MODES.get(str(mode)) or {
                0: "primary",
                1: "primary",
                2: "secondary",
            }.get(mode if isinstance(mode, int) else -1)
            if chosen is None:
                raise ConfigError(
                    f"unknown process_mode {mode}; known: {', '.join(_PROCESS_MODES)}",
                    self.place_of(control, "process_mode", path),
                )
            infer["process_mode"] = chosen
        for name, target in (("operate_on_gie_id", "operate_on_gie_id"), ("interval", "interval")):
            value = self.value(control, name, path, int)
            if value is not None and (value > 0 or name == "interval"):
                infer[target] = value
        classes = [item.value for item in control.all("operate_on_class_ids")]
        if classes:
            infer["operate_on_class_ids"] = [int(v) for v in classes]  # type: ignore[arg-type]
        objects = self.message(control, "object_control", path)
        limits = objects and self.message(objects, "bbox_filter", f"{path}.object_control")
        if limits:
            where = f"{path}.object_control.bbox_filter"
            for name in ("min_width", "min_height", "max_width", "max_height"):
                value = self.value(limits, name, where, int)
                if value:
                    infer[f"input_object_{name}"] = value

    def _output_control(self, top: TextMessage, infer: dict[str, Any]) -> None:
        path = "output_control"
        control = self.message(top, "output_control", "")
        if control is None:
            return
        if self.value(control, "output_tensor_meta", path, bool):
            infer["output_tensor_meta"] = True
        detect = self.message(control, "detect_control", path)
        if detect is None:
            return
        where = f"{path}.detect_control"
        default = self.message(detect, "default_filter", where)
        if default is not None:
            limits = self._box_limits(default, f"{where}.default_filter")
            if limits:
                infer["box_limits"] = limits
        per_class: dict[int, dict[str, int]] = {}
        for item in detect.all("specific_class_filters"):
            entry = item.value
            place = self.place(item, f"{where}.specific_class_filters")
            key = (
                self.value(entry, "key", f"{where}.specific_class_filters", int)
                if isinstance(entry, TextMessage)
                else None
            )
            value = self.message(entry, "value", where) if isinstance(entry, TextMessage) else None
            if key is None or value is None:
                raise ConfigError("expected { key: N value { bbox_filter { ... } } }", place)
            per_class[key] = self._box_limits(value, f"{where}.specific_class_filters.value")
        if per_class:
            infer["class_box_limits"] = per_class

    def _box_limits(self, class_filter: TextMessage, path: str) -> dict[str, int]:
        """A DetectClassFilter as the infer element's box limits."""
        limits: dict[str, int] = {}
        box = self.message(class_filter, "bbox_filter", path)
        if box is not None:
            for name in ("min_width", "min_height", "max_width", "max_height"):
                value = self.value(box, name, f"{path}.bbox_filter", int)
                if value:
                    limits[name] = value
        for name, target in (
            ("roi_top_offset", "top_margin"),
            ("roi_bottom_offset", "bottom_margin"),
        ):
            value = self.value(class_filter, name, path, int)
            if value:
                limits[target] = value
        return limits


def _local(uri: str) -> str:
    """A resolved ``file:///abs`` as the path ``/abs``; other URIs as they are."""
    return uri[len("file://") :] if uri.startswith("file:///") else uri
