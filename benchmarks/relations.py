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
from collections.abc import Callable, Iterator
from pathlib import Path

from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.pipeline.sentences import load_nlp  # noqa: E402
from service.answering.readers.squad_data import SquadExample, load_squad  # noqa: E402
from service.answering.readers.squad_metrics import score_prediction  # noqa: E402
from service.answering.relations import Relations, load_relation_rules  # noqa: E402
from service.answering.span_types import SpanTypes  # noqa: E402
from service.prompts import load_prompts  # noqa: E402
from service.settings import Settings  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FILES = ["squad11_dev/squad11-dev.shared.json", "squad2_dev_half/dev-v2.0.shared.json", "qa_extra/qed_nq.json",
         "qa_extra/quoref_superni.json", "qa_extra/covid_qa.json", "newsqa/newsqa-500.shared.json"]


def qa_data(doc: str | None) -> Path:
    """The QA files' folder from the command line (``--data``, default ../shared/data), which must exist."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    data: Path = parser.parse_args().data
    if not data.is_dir():
        sys.exit(f"{data} not found: the QA files come with ../shared beside the checkout")
    return data


def questions_of(data: Path, asks: Callable[[str], bool]) -> Iterator[tuple[str, SquadExample]]:
    """Every question of the QA files in ``data`` that ``asks`` takes, with its file's name."""
    for name in FILES:
        path = data / name
        if path.is_file():
            yield from ((path.name, ex) for ex in load_squad(path) if asks(ex.question))


def wilson_lower(right: int, n: int) -> float:
    """Lower bound of the 95% Wilson score interval for ``right`` of ``n`` (scipy, which scikit-learn brings)."""
    return float(binomtest(right, n).proportion_ci(method="wilson").low) if n else 0.0


def main() -> None:
    data = qa_data(__doc__)
    nlp = load_nlp(Settings().spacy_model)
    prompts = load_prompts(ROOT / "prompts")
    relations = Relations(nlp, load_relation_rules(ROOT / "prompts" / "relations.toml"))
    types = SpanTypes(nlp, prompts)
    asked = found = right = 0
    for name, ex in questions_of(data, relations.asks):
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
        print(f"{'right' if ok else 'wrong'}  {name}  {ex.question!r} -> {answer.answer!r} "
              f"(gold {golds[:1] or ['unanswerable']})")
    print(f"\n{asked} questions of the relational forms, {found} answered by the parse, {right} right; "
          f"95% Wilson lower bound {wilson_lower(right, found):.2f}")


if __name__ == "__main__":
    main()
