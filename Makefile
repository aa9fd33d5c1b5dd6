# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= demo

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test test-all clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins the whole tested set, so a fresh machine gets what CI got.
	$(PY) -m pip install -q -c constraints.txt -e ".[train,flows,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seqae --quiet datasets ecg5000 --out $(DEMO)/data --shards 4 --overwrite
	$(VENV)/bin/seqae --quiet validate --data $(DEMO)/data --filter "label == 1" --rejects-dir $(DEMO)/validate > $(DEMO)/validate.json
	@echo "demo: validation report in $(DEMO)/validate.json"

# pytest exits 5 when it collects no test; that is a failure here, as any non-zero exit.
test: $(STAMP)
	$(PY) -m pytest -m "not gpu"

clean:
	rm -rf $(DEMO) .pytest_cache
