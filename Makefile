# panoptes: `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_ASSETS := $(abspath ../shared/assets)
# Tests and the demo read the shared models when they are there (no download needed).
ifneq ($(wildcard $(SHARED_ASSETS)/models),)
export PANOPTES_MODEL_PATH ?= $(SHARED_ASSETS)/models
endif
DEMO_VIDEOS := $(if $(wildcard $(SHARED_ASSETS)/videos),--videos $(SHARED_ASSETS)/videos)

# Debian packages the tests use, with the command that shows each is there: ffprobe and ffmpeg
# check the videos and RTSP streams panoptes writes, GStreamer's rtspsrc and Chromium play them as
# real clients, mosquitto and redis-server are the brokers events go to.
TEST_DEBS := ffmpeg:ffprobe gstreamer1.0-tools:gst-launch-1.0 \
	gstreamer1.0-plugins-good:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstrtsp.so \
	gstreamer1.0-plugins-bad:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstvideoparsersbad.so \
	gstreamer1.0-libav:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstlibav.so \
	chromium:chromium mosquitto:mosquitto redis-server:redis-server

.PHONY: setup system-deps demo test test-all check bench soak clean

# The tests run the GPU path's PyTorch code on the CPU: this machine's CPU build of torch is
# installed first, so that the dev extra's range does not pull a CUDA build; onnx2torch comes
# without its torchvision requirement, whose wheels are CUDA builds that do not load on it.
TORCH ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps 'onnx2torch>=1.5'
	touch $@

setup: $(VENV)/.installed

system-deps:
	@missing=""; for item in $(TEST_DEBS); do \
		check=$${item#*:}; case $$check in /*) test -e $$check;; *) command -v $$check;; esac \
			>/dev/null || missing="$$missing $${item%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt=apt-get; \
		elif command -v sudo >/dev/null; then apt="sudo apt-get"; \
		else echo "The tests need these Debian packages:$$missing (apt-get install$$missing)"; exit 1; fi; \
		echo "Installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive $$apt install -y -q $$missing >/dev/null || \
		{ $$apt update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$apt install -y -q $$missing >/dev/null; }; \
	fi

demo: setup
	$(BIN)/panoptes demo $(DEMO_VIDEOS)

test: setup system-deps
	$(BIN)/python -m pytest

test-all: setup system-deps
	$(BIN)/python -m pytest -m "not gpu"

check: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

bench: setup system-deps
	$(BIN)/python benchmarks/cpu_pipeline.py
	$(BIN)/python benchmarks/display_pipeline.py
	$(BIN)/python benchmarks/analytics.py
	$(BIN)/python benchmarks/events.py
	$(BIN)/python benchmarks/live_pipeline.py
	$(BIN)/python benchmarks/workers.py

# Not part of bench: 30 minutes of four live cameras, checking that memory and descriptors stay flat.
soak: setup
	$(BIN)/python benchmarks/soak.py --streams 4 --duration-s 1800

clean:
	rm -rf $(VENV) .venv-triton .venv-triton.lock out .pytest_cache .mypy_cache .ruff_cache
