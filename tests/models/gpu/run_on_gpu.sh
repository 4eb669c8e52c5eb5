#!/usr/bin/env bash
# The GPU path's tests and benchmark on a GPU machine, in one go: run from anywhere in the
# checkout, extra arguments go to benchmarks/gpu_infer.py. Writes pytest's report and the
# benchmark's JSON under $OUT.
#
# The machine has torch (CUDA), torchvision, numpy, OpenCV, onnx and onnxruntime; the rest
# travels in $CARRY (default .gpu-wheels/torch-path, ignored by git), made on the development
# machine with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       --platform manylinux_2_17_x86_64 -d .gpu-wheels/torch-path/wheels \
#       onnx2torch pydantic pydantic-core annotated-types typing-inspection tqdm \
#       pytest pluggy iniconfig packaging pygments
#   mkdir -p .gpu-wheels/torch-path/assets && cp -r ../shared/assets/videos \
#       .gpu-wheels/torch-path/assets/ && mkdir -p .gpu-wheels/torch-path/assets/models && \
#       cp ../shared/assets/models/{yolox_nano,nanodet_m_416,FastestDet,yolov8n_int8}.onnx \
#       ../shared/assets/models/{light_person_detector_192,yolo11n-pose_int8.tailfix}.onnx \
#       .gpu-wheels/torch-path/assets/models/
# (pydantic and pydantic-core at the versions of the development machine's environment.)
set -euo pipefail
cd "$(dirname "$0")/../../.."
CARRY=${CARRY:-.gpu-wheels/torch-path}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"

# Only what is missing is installed: a package already there is left as it is.
python3 -m pip install -q --no-deps --no-index --find-links "$CARRY/wheels" \
    onnx2torch pydantic pydantic-core annotated-types typing-inspection tqdm \
    pytest pluggy iniconfig packaging pygments

export PYTHONPATH=src
export PANOPTES_TEST_ASSETS="$CARRY/assets"
export PANOPTES_MODEL_PATH="$CARRY/assets/models"
export PANOPTES_CACHE_DIR=/tmp/panoptes-cache  # converted models: not worth sending back
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"

status=0
python3 -m pytest tests/models/gpu -m "gpu or not gpu" --confcutdir tests/models/gpu \
    -p no:cacheprovider -q -rs --durations 10 2>&1 | tee "$OUT/pytest.txt" || status=$?
python3 benchmarks/gpu_infer.py --out "$OUT/gpu_infer.json" "$@" 2>&1 | tee "$OUT/benchmark.txt" \
    || status=$?
exit "$status"
