# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= demo

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo demo-long test test-fast docs bench bench-guard quality clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins the whole tested set, so a fresh machine gets what CI got.
	$(PY) -m pip install -q -c constraints.txt -e ".[train,flows,ray,dev,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seqae --quiet datasets ecg5000 --out $(DEMO)/data --shards 4 --overwrite
	$(VENV)/bin/seqae validate --data $(DEMO)/data --rejects-dir $(DEMO)/checked > $(DEMO)/validate.json
	# The pipeline flow in this process (Prefect starts a temporary local server; no server to run):
	# train -> export (parity gate) -> threshold -> promote -> embed -> evaluate.
	# --epochs 100: the demo's own stated budget (about 4,100 optimizer steps). The library's defaults
	# cannot make 5 minutes here: make quality (2026-12-04) trained ECG5000's normal beats to the
	# 300-epoch cap with them at all three seeds, 6 to 9 minutes a case on 2 cores (docs/benchmarks.md).
	$(PY) -m flows pipeline --data $(DEMO)/data --models $(DEMO)/models --out $(DEMO)/out \
		--filter "label == 1" --epochs 100 > $(DEMO)/pipeline.json
	$(PY) -c "import duckdb; g='$(DEMO)/out/embeddings/*.parquet'; \
	duckdb.sql(f\"SELECT label, count(*) AS n, round(avg(recon_error), 4) AS mean_recon_error FROM read_parquet('{g}') GROUP BY label ORDER BY label\").show(); \
	duckdb.sql(f\"SELECT id, label, round(recon_error, 4) AS recon_error FROM read_parquet('{g}') ORDER BY recon_error DESC LIMIT 5\").show()"
	@echo "demo: outputs in $(DEMO)/ (promoted model under $(DEMO)/models/default/versions/, loss curve loss.png there, $(DEMO)/out/embeddings/, $(DEMO)/pipeline.json)"

# Long series: one real series with one labelled anomaly (UCR anomaly archive 135), cut into windows
# of 64 steps every step; validation held out by time; per-timestamp scores and point-anomaly metrics.
LONG := --layout long --key-column series --time-column time --feature-columns value --window 64 --stride 1
demo-long: $(STAMP)
	$(VENV)/bin/seqae --quiet datasets ucr-anomaly --out $(DEMO)/ucr --overwrite
	# The library's training defaults: nothing pinned for this series.
	$(VENV)/bin/seqae --quiet train --data $(DEMO)/ucr/train --model-dir $(DEMO)/ucr-model $(LONG) \
		> $(DEMO)/ucr-train.json
	$(VENV)/bin/seqae --quiet export $(DEMO)/ucr-model > $(DEMO)/ucr-export.json
	# The default method (auto): 113 held-out windows are too few for a tail fit (pot), so the empirical
	# 99th percentile for the windows; the steps' threshold is fitted on the bank's own windows
	# (neighbours.parquet: each training window against the rest). The printed method says which was used.
	$(VENV)/bin/seqae --quiet threshold --model $(DEMO)/ucr-model > $(DEMO)/ucr-threshold.json
	$(VENV)/bin/seqae --quiet embed --model $(DEMO)/ucr-model --data $(DEMO)/ucr/test --out $(DEMO)/ucr-embeddings \
		--step-scores --overwrite > $(DEMO)/ucr-embed.json
	# Beside the nearest-training-window baseline, computed apart: with the model's bank (the default) the
	# step score is that distance, and the two rank alike.
	$(VENV)/bin/seqae --quiet evaluate --model $(DEMO)/ucr-model --data $(DEMO)/ucr/test --label-column is_anomaly \
		--normal-value 0 --baseline-data $(DEMO)/ucr/train --out $(DEMO)/ucr-evaluation > $(DEMO)/ucr-evaluation.json
	cat $(DEMO)/ucr-evaluation/report.md

# pytest exits 5 when it collects no test; that is a failure here, as any non-zero exit.
test: $(STAMP)
	$(VENV)/bin/ruff check seqae flows tests benchmarks tools
	$(VENV)/bin/mypy
	# Two processes (pytest-xdist), a test file per process at a time: module fixtures are built once.
	$(PY) -m pytest -n 2 --dist loadfile -m "not gpu"

# The inner loop: no model training, no whole jobs (about a minute); `make test` runs everything.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check seqae flows tests benchmarks tools
	$(VENV)/bin/mypy
	$(PY) -m pytest -m "not gpu and not slow"

# The documentation site from docs/ and the docstrings, into site/ (--strict: a broken link, a missing
# page or an API entry that does not resolve fails the build). Offline: no fonts or plugins fetched.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# Every speed and memory figure side by side (8 to 11 minutes on 2 cores): bench/results/<date>.json
# and .md. Run it on a quiet machine; the figures are medians, but other load still moves them.
bench: $(STAMP)
	cd benchmarks && ../$(PY) bench.py --out ../bench/results

# The library's defaults on every data set held (linear probe on 7 classification sets and 2 held out, ECG5000
# anomaly over 3 seeds and on another split, UCR series 135, two long ECG sets beside a nearest-window peer):
# bench/results/quality-<date>.json and .md, 57 minutes on 2 cores from scratch for all 25 cases with the defaults of
# 2026-12-04 (two cases at a time, longest first, one TensorFlow thread each), resumable (a rerun the same day skips
# finished cases).
# QUALITY=--quick: a few minutes.
quality: $(STAMP)
	cd benchmarks && ../$(PY) quality.py --out ../bench/results --jobs 2 --threads 1 $(QUALITY)

# The CI guard: the same at a small size; fails only on gross regressions (see benchmarks/bench.py).
bench-guard: $(STAMP)
	cd benchmarks && ../$(PY) bench.py --quick --out ../bench/results/ci

clean:
	rm -rf $(DEMO) .pytest_cache
