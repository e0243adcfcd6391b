"""How often the relational-question parse (``service/answering/relations.py``) is right: the measurement behind the
``confidence`` in ``prompts/relations.toml``.

    python benchmarks/relations.py            # every question of the relational forms in ../shared/data's QA files

Each question of the forms in ``prompts/relations.toml`` is answered from its gold paragraph by the parse alone
(no reader); an answer is right when its SQuAD F1 against a gold answer is at least 0.5. Prints each answer found,
the count, and the lower bound of the 95% Wilson interval of the share right (the confidence to give such answers).
Needs ``../shared/data`` (never copied into the repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.pipeline.sentences import load_nlp  # noqa: E402
from service.answering.readers.squad_data import load_squad  # noqa: E402
from service.answering.readers.squad_metrics import score_prediction  # noqa: E402
from service.answering.relations import Relations, load_relation_rules  # noqa: E402
from service.answering.span_types import SpanTypes  # noqa: E402
from service.prompts import load_prompts  # noqa: E402
from service.settings import Settings  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FILES = ["squad11_dev/squad11-dev.shared.json", "squad2_dev_half/dev-v2.0.shared.json", "qa_extra/qed_nq.json",
         "qa_extra/quoref_superni.json", "qa_extra/covid_qa.json", "newsqa/newsqa-500.shared.json"]


def wilson_lower(right: int, n: int) -> float:
    """Lower bound of the 95% Wilson score interval for ``right`` of ``n`` (scipy, which scikit-learn brings)."""
    return float(binomtest(right, n).proportion_ci(method="wilson").low) if n else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: the QA files come with ../shared beside the checkout")
    nlp = load_nlp(Settings().spacy_model)
    prompts = load_prompts(ROOT / "prompts")
    relations = Relations(nlp, load_relation_rules(ROOT / "prompts" / "relations.toml"))
    types = SpanTypes(nlp, prompts)
    asked = found = right = 0
    for name in FILES:
        path = args.data / name
        if not path.is_file():
            continue
        for ex in load_squad(path):
            if not relations.asks(ex.question):
                continue
            asked += 1
            required = types.required(ex.question)
            sentences = [("p", s.start_char, s.text) for s in nlp(ex.context).sents]
            answer = relations.answer(ex.question, sentences, required.labels if required else None)
            if answer is None:
                continue
            found += 1
            golds = [text for _, text in ex.answers]
            ok = score_prediction(golds, answer.answer)[1] >= 0.5
            right += ok
            print(f"{'right' if ok else 'wrong'}  {name.split('/')[-1]}  {ex.question!r} -> {answer.answer!r} "
                  f"(gold {golds[:1] or ['unanswerable']})")
    print(f"\n{asked} questions of the relational forms, {found} answered by the parse, {right} right; "
          f"95% Wilson lower bound {wilson_lower(right, found):.2f}")


if __name__ == "__main__":
    main()
