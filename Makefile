# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= demo

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins the whole tested set, so a fresh machine gets what CI got.
	$(PY) -m pip install -q -c constraints.txt -e ".[train,flows,ray,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seqae --quiet datasets ecg5000 --out $(DEMO)/data --shards 4 --overwrite
	$(VENV)/bin/seqae validate --data $(DEMO)/data --rejects-dir $(DEMO)/checked > $(DEMO)/validate.json
	# The pipeline flow in this process (Prefect starts a temporary local server; no server to run):
	# train -> export (parity gate) -> threshold -> promote -> embed -> evaluate.
	$(PY) -m flows pipeline --data $(DEMO)/data --models $(DEMO)/models --out $(DEMO)/embeddings \
		--filter "label == 1" > $(DEMO)/pipeline.json
	$(PY) -c "import duckdb; g='$(DEMO)/embeddings/*.parquet'; \
	duckdb.sql(f\"SELECT label, count(*) AS n, round(avg(recon_error), 4) AS mean_recon_error FROM read_parquet('{g}') GROUP BY label ORDER BY label\").show(); \
	duckdb.sql(f\"SELECT id, label, round(recon_error, 4) AS recon_error FROM read_parquet('{g}') ORDER BY recon_error DESC LIMIT 5\").show()"
	@echo "demo: outputs in $(DEMO)/ (promoted model under $(DEMO)/models/default/versions/, loss curve loss.png there, embeddings, $(DEMO)/pipeline.json)"

# pytest exits 5 when it collects no test; that is a failure here, as any non-zero exit.
test: $(STAMP)
	$(VENV)/bin/ruff check seqae flows tests benchmarks tools
	$(PY) -m pytest -m "not gpu"

# The inner loop: no model training, no whole jobs (about a minute); `make test` runs everything.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check seqae flows tests benchmarks tools
	$(PY) -m pytest -m "not gpu and not slow"

clean:
	rm -rf $(DEMO) .pytest_cache
