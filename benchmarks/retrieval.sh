#!/usr/bin/env bash
# Retrieval figures for the README: one run of `newsroom-qa eval retrieval` per test collection, with the
# configured (dev-tuned) fusion settings. Needs ../shared/data beside the checkout (or DATA=...).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin/newsroom-qa}
OUT=benchmarks/results
mkdir -p "$OUT"
# Ingested collections are kept here between runs (ingesting SciFact takes minutes); delete it to start over.
CACHE=${CACHE:-${TMPDIR:-/tmp}/newsroom-qa-bench}
# Each collection is ingested as on a fresh install: the bulk engine (BATCH_BACKEND=auto, int8) is calibrated on
# that collection's own first batch, not on a model another collection left in the shared cache directory.
fresh() { NEWSROOM_QA_CACHE_DIR="$CACHE/$1-model-cache" "${@:2}"; }
fresh scifact "$BIN" eval retrieval --beir "$DATA/beir_scifact" --split test --data-dir "$CACHE/scifact" \
    --report "$OUT/test-science-claims.json" > "$OUT/test-science-claims.md"
fresh time "$BIN" eval retrieval --time "$DATA/time_collection" --data-dir "$CACHE/time" \
    --report "$OUT/test-time-magazine.json" > "$OUT/test-time-magazine.md"
fresh newsqa "$BIN" eval retrieval --squad "$DATA/newsqa/newsqa-500.shared.json" --half test --data-dir "$CACHE/newsqa" \
    --report "$OUT/test-cnn-questions.json" > "$OUT/test-cnn-questions.md"
cat "$OUT"/test-*.md
