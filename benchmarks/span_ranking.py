"""Fit and measure how much the question-sentence cosine and word share weigh in ranking the reader's spans: the
measurement behind ``ranking.json`` beside the reader (``service/answering/readers/span_ranking.py``).

    python benchmarks/span_ranking.py            # fit on the tune splits, report the held-out ones
    python benchmarks/span_ranking.py --write    # ... and save the weight beside the shipped reader

Each answerable question of the three QA files (SQuAD 1.1, the SQuAD 2.0 half, NewsQA-500) is read from its gold
paragraph by the shipped span model; its best ``candidates`` spans (as the reader ranks them) are taken with three
features: the span score less the best one's, the cosine between the question and the span's stored sentence (the
archive's sentence encoder) and the share of the question's words that sentence holds (``word_coverage``, rarity
counted over the paragraph's sentences). A logistic regression of "the span is right" (F1 >= 0.5) on them, fitted on
the tune splits, gives the weights: each coefficient over the score's, in the span model's logit units.
Printed for the held-out splits: F1 of the top span never abstaining and the share whose sentence holds a gold
answer, before and after, with a 95% paired bootstrap interval of the F1 change. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.relations import DATA  # noqa: E402
from service.answering.qa import QAService  # noqa: E402
from service.answering.readers.span_ranking import SpanRanking  # noqa: E402
from service.answering.readers.squad_data import load_squad, split_of  # noqa: E402
from service.answering.readers.squad_metrics import score_prediction  # noqa: E402
from service.answering.readers.transformer import BUNDLED_READER, TransformerReader, _sentence_at  # noqa: E402
from service.cli.common import _service  # noqa: E402
from service.evaluation.reader import _documents, paragraph_id  # noqa: E402

FILES = ("squad11_dev/squad11-dev.shared.json", "squad2_dev_half/dev-v2.0.shared.json",
         "newsqa/newsqa-500.shared.json")
Question = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # split, features (candidates x 3), F1s, sentence right


def candidates_of(service: QAService, path: Path, head: int) -> list[Question]:
    """Per answerable tune/held-out question of ``path``: its best ``head`` spans' features and outcomes."""
    reader = service.reader
    assert isinstance(reader, TransformerReader)
    examples = [ex for ex in load_squad(path, ("tune", "heldout")) if not ex.is_impossible]
    service.add_documents(_documents(examples), show_progress=False)
    snap = service.store.snapshot()
    out: list[Question] = []
    for ex in examples:
        doc_id = paragraph_id(ex.context)
        text, sentences = snap.document(doc_id).text, snap.sentences(doc_id)
        predictions = reader.model.predict(ex.question, [text], top_n=reader.top_n)[:head]
        if not predictions:
            continue
        golds = [t for _, t in ex.answers]
        spans = [_sentence_at(sentences, p.start, p.end) for p in predictions]
        pool = [text[s.start:s.end] for s in sentences]
        by_sentence = SpanRanking().features([text[a:b] for a, b in spans], ex.question,
                                             service.embedder.embed_query(ex.question), service.embedder.embed_few,
                                             pool.copy)
        best = predictions[0].score
        features = np.column_stack([[p.score - best for p in predictions], by_sentence])
        f1s = np.array([score_prediction(golds, text[p.start:p.end])[1] for p in predictions])
        held = np.array([any(g in text[a:b] for g in golds) for a, b in spans])
        out.append((split_of(ex.dataset, ex.context), features, f1s, held))
    return out


def outcome(questions: list[Question], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 and sentence-right of the span each question's ranking picks (``weights``: of the three features)."""
    picks = [int(np.argmax(f @ weights)) for _, f, _, _ in questions]
    return (np.array([q[2][i] for q, i in zip(questions, picks, strict=True)]),
            np.array([q[3][i] for q, i in zip(questions, picks, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--write", action="store_true", help="save the weight as ranking.json beside the reader")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: the QA files come with ../shared beside the checkout")
    from sklearn.linear_model import LogisticRegression

    head = SpanRanking().candidates
    by_file: dict[str, list[Question]] = {}
    for name in FILES:
        with tempfile.TemporaryDirectory(prefix="newsroom-qa-ranking-") as tmp:
            service = _service(Path(tmp), seed_if_empty=False, reader="trained")
            by_file[Path(name).name] = candidates_of(service, args.data / name, head)
    tune = [q for qs in by_file.values() for q in qs if q[0] == "tune"]
    x = np.vstack([f for _, f, _, _ in tune])
    y = np.concatenate([f1 >= 0.5 for _, _, f1, _ in tune])
    coef = LogisticRegression(max_iter=1000).fit(x, y).coef_[0]
    weights = coef / coef[0]
    print(f"fitted on {len(tune)} tune questions: score {coef[0]:.3f}, cosine {coef[1]:.3f}, word share "
          f"{coef[2]:.3f} -> weights {weights[1]:.2f}, {weights[2]:.2f}")
    rng = np.random.default_rng(0)
    for name, questions in by_file.items():
        held = [q for q in questions if q[0] == "heldout"]
        f1_before, sent_before = outcome(held, np.array([1.0, 0.0, 0.0]))
        f1_after, sent_after = outcome(held, weights)
        change = f1_after - f1_before
        boot = [rng.choice(change, len(change)).mean() for _ in range(2000)]
        print(f"{name} held-out ({len(held)} q): F1 never abstaining {100 * f1_before.mean():.2f} -> "
              f"{100 * f1_after.mean():.2f} (95% interval of the change {100 * np.percentile(boot, 2.5):+.2f} to "
              f"{100 * np.percentile(boot, 97.5):+.2f}); right sentence {100 * sent_before.mean():.1f} -> "
              f"{100 * sent_after.mean():.1f}%")
    if args.write:
        names = ", ".join(by_file)
        SpanRanking(sentence_weight=round(float(weights[1]), 3), coverage_weight=round(float(weights[2]), 3),
                    candidates=head,
                    fitted_on=f"tune split of {names} ({len(tune)} answerable q), benchmarks/span_ranking.py"
                    ).save(BUNDLED_READER)
        print(f"written to {BUNDLED_READER / 'ranking.json'}")


if __name__ == "__main__":
    main()
