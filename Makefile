# The README's two commands. Both create .venv when it is missing and install the project there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.13.0 is installed only when torch is not importable yet (a torch already in the
# environment, CUDA build or not, is kept as it is), so that the `export` extra's `torch>=2.1`
# never makes pip choose a release by itself.
TORCH := torch==2.13.0
# The demo needs PyTorch and ONNX Runtime only; the tests add the other runtimes, the Triton server,
# Ray, perf_analyzer and the checkers.
DEMO_EXTRAS := export,cpu
EXTRAS := export,cpu,openvino,images,plot,dev,serve,ray

.PHONY: demo test board-check clean

$(VENV)/.demo-installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	touch $@

$(VENV)/.installed: $(VENV)/.demo-installed
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(PY) -m benchmark.perf_analyzer install || echo "perf_analyzer not installed: resnet-bench --triton uses its builtin load generator"
	touch $@

DEMO := demo-output

demo: $(VENV)/.demo-installed
	mkdir -p $(DEMO)
	$(PY) -m resnet
	@echo
	$(VENV)/bin/resnet-export --depth 50 --opset 17 --output $(DEMO)/resnet50.onnx
	@echo
	$(VENV)/bin/resnet-bench $(DEMO)/resnet50.onnx --vs pytorch --batch 1,8 --markdown $(DEMO)/benchmark.md

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

# The aarch64 board check alone (it runs in `make test` too): an emulated Cortex-A76 and A72
# (tools/board-aarch64; Debian's qemu-user-static and debootstrap, installed with apt as root).
board-check: $(VENV)/.installed
	$(PY) -m pytest -q tests/deploy/test_board_aarch64.py

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info .pytest_cache
