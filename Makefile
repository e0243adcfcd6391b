# One command each for a new user: `make serve` (install + run on the seeds) and `make test` (install + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
# On machines without a local CPU wheel of torch, pass e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: install browser serve test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: otherwise pip resolves sentence-transformers' torch to a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(VENV)/bin/newsroom-qa serve

# The browser tests drive Debian's Chromium (Playwright's own browser download needs the internet). Installed when
# missing and we may (root or sudo); without it those tests are skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	    echo "note: could not install chromium; the browser tests will be skipped"; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo apt-get install -y -q chromium chromium-driver >/dev/null; \
	  else echo "note: chromium is not installed; the browser tests will be skipped (apt-get install chromium)"; fi; }

test: install browser
	$(PY) -m pytest

# Figures for docs/ (needs ../shared/data): retrieval, reader, and the load check. Run on an idle machine.
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/perf.py
	$(PY) benchmarks/roofline.py
	$(PY) benchmarks/scaleout.py
	bash benchmarks/retrieval.sh
	bash benchmarks/reader.sh
	$(PY) benchmarks/load.py --articles tests/fixtures/articles --clients 4 --seconds 30

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
