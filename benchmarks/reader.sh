#!/usr/bin/env bash
# Reader figures for the README and the model card: one run of `newsroom-qa eval reader` per set and reader, on the
# held-out split only (never trained or tuned on). Needs ../shared/data beside the checkout (or DATA=...).
# Reports keep aggregate figures only (--figures-only): the data sets' text stays out of the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin/newsroom-qa}
OUT=benchmarks/results
READERS=${READERS:-trained heuristic}
mkdir -p "$OUT"
for reader in $READERS; do
    # with the answer's paragraph given: the calibration fitted that way (the heuristic has none and ignores it)
    "$BIN" eval reader "$DATA/squad11_dev/squad11-dev.shared.json" --gold-context --calibration gold \
        --reader "$reader" --figures-only --report "$OUT/reader-wiki11-gold-$reader.json"
    "$BIN" eval reader "$DATA/squad2_dev_half/dev-v2.0.shared.json" --gold-context --calibration gold \
        --reader "$reader" --figures-only --report "$OUT/reader-wiki20-gold-$reader.json"
    "$BIN" eval reader "$DATA/newsqa/newsqa-500.shared.json" --gold-context --calibration gold \
        --reader "$reader" --figures-only --report "$OUT/reader-cnn-gold-$reader.json"
    # end to end, as the service answers (its default calibration, refitted over an archive)
    "$BIN" eval reader "$DATA/newsqa/newsqa-500.shared.json" --open --reader "$reader" --figures-only \
        --report "$OUT/reader-cnn-open-$reader.json"
    # unanswerable questions over an archive: every paragraph of the SQuAD 2.0 half stored, most not answering
    "$BIN" eval reader "$DATA/squad2_dev_half/dev-v2.0.shared.json" --open --reader "$reader" --figures-only \
        --report "$OUT/reader-wiki20-open-$reader.json"
    if [ "$reader" != heuristic ]; then  # the same with the gold calibration over an archive (READER_CALIBRATION=gold)
        "$BIN" eval reader "$DATA/newsqa/newsqa-500.shared.json" --open --calibration gold --reader "$reader" \
            --figures-only --report "$OUT/reader-cnn-open-calibrated-gold-$reader.json"
        "$BIN" eval reader "$DATA/squad2_dev_half/dev-v2.0.shared.json" --open --calibration gold --reader "$reader" \
            --figures-only --report "$OUT/reader-wiki20-open-calibrated-gold-$reader.json"
    fi
done
"${PY:-.venv/bin/python}" -m service.evaluation.reader "$OUT"/reader-*.json | tee benchmarks/READER-RESULTS.md
