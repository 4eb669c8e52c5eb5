"""A real Triton server for the tests and the benchmark: an ONNX model served by PyTriton.

Runs with the Python of the PyTriton virtual environment (see ``conftest.py``), not panoptes'
own: PyTriton pins numpy < 2. The model runs in onnxruntime inside the bound Python function:
the whole request batch in one call, or image by image when the file fixes its batch at one
(yolox_nano.onnx does), while Triton still takes batches up to ``--max-batch-size``. Stops on
SIGTERM.

    .venv-triton/bin/python tests/inference_server/serve_yolox.py MODEL.onnx --grpc-port 8001 \
        --http-port 8000 --metrics-port 8002 --model-name yolox_nano --max-batch-size 8
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # leaves the ``with Triton(...)`` block, which stops the server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path, help="the ONNX file to serve")
    parser.add_argument("--model-name", default=None, help="default: the file's stem")
    parser.add_argument("--model-version", type=int, default=1)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    outputs = session.get_outputs()

    fixed_batch = image_input.shape[0] if isinstance(image_input.shape[0], int) else None
    names = [node.name for node in outputs]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        images = inputs[image_input.name]
        step = fixed_batch or len(images)
        parts = [
            session.run(names, {image_input.name: images[start : start + step]})
            for start in range(0, len(images), step)
        ]
        return {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}

    def tensor(node: ort.NodeArg) -> Tensor:
        # The batch dimension is Triton's (max_batch_size); the others are the model's.
        shape = tuple(dim if isinstance(dim, int) else -1 for dim in node.shape[1:])
        return Tensor(name=node.name, dtype=_DTYPES[node.type], shape=shape)

    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        http_address="127.0.0.1",
        http_port=args.http_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        # On SIGTERM Triton waits for open HTTP connections up to this long (30 s by default).
        exit_timeout_secs=5,
    )
    # PyTriton guards the shared-memory API with a token by default; a stock tritonserver does
    # not, and clients on this host register their regions there.
    security = TritonSecurityConfig(restricted_endpoints=["model-repository", "trace", "logging"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=args.model_name or args.model.stem,
            model_version=args.model_version,
            infer_func=infer,
            inputs=[tensor(image_input)],
            outputs=[tensor(node) for node in outputs],
            config=ModelConfig(max_batch_size=args.max_batch_size),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
