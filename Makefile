# Two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench docs clean bytecode e2e-vllm

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Compiled bytecode for src/: an editable install leaves it to the first import, which does not
# write it where PYTHONDONTWRITEBYTECODE is set (CI images, containers): then every process (the
# run, each worker) compiles clientswarm from source, about 0.3 s of its start-up. Cheap when
# nothing changed.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src > /dev/null

demo: $(STAMP) bytecode
	$(BIN)/clientswarm run examples/quickstart.yaml --mock --output results/quickstart

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy src
	$(BIN)/lint-imports

test: $(STAMP) bytecode lint
	sh scripts/ensure-test-deps.sh
	$(BIN)/pytest -q

bench: $(STAMP) bytecode
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/run.py && $(BIN)/python bench/http_layers.py && $(BIN)/python bench/fullpath.py \
	&& $(BIN)/python bench/exactness.py && $(BIN)/python bench/scale.py --hold-s 66 \
	&& $(BIN)/python bench/startup.py && $(BIN)/python bench/fleet.py --quick \
	&& $(BIN)/python bench/tokencost.py --quick

# The documentation site, offline (no CDN): regenerate docs/reference/ from the code, then build
# site/ (open site/index.html from disk, or serve it). Warnings (broken links/anchors, pages
# missing from the nav) fail the build.
docs: $(STAMP)
	$(BIN)/python scripts/docs_reference.py
	$(BIN)/python scripts/grafana_dashboard.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

e2e-vllm: $(STAMP) bytecode  # bench/vllm/README.md: clientswarm against a real vLLM (CPU)
	bash bench/vllm/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
