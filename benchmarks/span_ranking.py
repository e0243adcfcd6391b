"""Fit and measure how much the question-sentence cosine and word share weigh in ranking the reader's spans: the
measurement behind ``ranking.json`` beside the reader (``service/answering/readers/span_ranking.py``).

    python benchmarks/span_ranking.py            # fit on the tune splits, report the held-out ones
    python benchmarks/span_ranking.py --write    # ... and save the weights beside the shipped reader

Each answerable question of the three QA files (SQuAD 1.1, the SQuAD 2.0 half, NewsQA-500) is read twice by the
shipped span model: from its gold paragraph, and as ``/v1/ask`` reads it over an archive of every paragraph of its
file (the passages retrieval gives, several articles). Its best ``candidates`` spans (as the reader ranks them) are
taken with three features: the span score less the best one's, the cosine between the question and the span's
stored sentence (the archive's sentence encoder) and the share of the question's words that sentence holds
(``word_coverage``, rarity counted over the sentences read). A logistic regression of "the span is right" (F1 >= 0.5)
on them, fitted on the tune splits of both settings, gives the weights: each coefficient over the score's, in the
span model's logit units. Printed for the held-out splits: F1 of the top span never abstaining and the share whose
sentence holds a gold answer (over an archive: in the gold article), before and after, with a 95% paired bootstrap
interval of the F1 change. Needs ``../shared/data``.
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
from index.models import Document, Sentence  # noqa: E402
from service.answering.qa import QAService  # noqa: E402
from service.answering.readers.span_ranking import SpanRanking  # noqa: E402
from service.answering.readers.squad_data import load_squad, split_of  # noqa: E402
from service.answering.readers.squad_metrics import score_prediction  # noqa: E402
from service.answering.readers.transformer import (  # noqa: E402
    BUNDLED_READER,
    TransformerReader,
    _Segment,
    _sentence_at,
    _sentences_in,
    merge_passages,
)
from service.cli.common import _service  # noqa: E402
from service.evaluation.reader import _documents, paragraph_id  # noqa: E402

FILES = ("squad11_dev/squad11-dev.shared.json", "squad2_dev_half/dev-v2.0.shared.json",
         "newsqa/newsqa-500.shared.json")
Question = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # split, features (candidates x 3), F1s, right place


def _read(service: QAService, question: str, vector: np.ndarray, segments: list[_Segment],
          documents: dict[str, Document], sentences: dict[str, list[Sentence]], head: int, golds: list[str],
          gold_doc: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The span model's best ``head`` spans over ``segments``: features, F1s and whether each span's sentence holds
    a gold answer (in the gold article, when ``gold_doc`` is given); None when it finds no span."""
    reader = service.reader
    assert isinstance(reader, TransformerReader)
    contexts = [documents[s.doc_id].text[s.start:s.end] for s in segments]
    predictions = reader.model.predict(question, contexts, top_n=reader.top_n)[:head]
    if not predictions:
        return None
    texts, f1s, held = [], [], []
    for p in predictions:
        seg = segments[p.context_index]
        text = documents[seg.doc_id].text
        a, b = _sentence_at(sentences[seg.doc_id], seg.start + p.start, seg.start + p.end)
        texts.append(text[a:b])
        f1s.append(score_prediction(golds, text[seg.start + p.start:seg.start + p.end])[1])
        held.append(any(g in text[a:b] for g in golds) and gold_doc in (None, seg.doc_id))
    pool = [documents[d].text[s.start:s.end] for d, _, s in _sentences_in(segments, sentences)]
    by_sentence = SpanRanking().features(texts, question, vector, service.embedder.embed_few, pool.copy)
    best = predictions[0].score
    return np.column_stack([[p.score - best for p in predictions], by_sentence]), np.array(f1s), np.array(held)


def candidates_of(service: QAService, path: Path, head: int, setting: str) -> list[Question]:
    """Per answerable tune/held-out question of ``path``: its best ``head`` spans' features and outcomes, read from
    the gold paragraph (``setting`` "gold") or from what retrieval finds over every paragraph of the file ("open")."""
    examples = [ex for ex in load_squad(path, ("tune", "heldout")) if not ex.is_impossible]
    service.add_documents(_documents(load_squad(path) if setting == "open" else examples), show_progress=False)
    snap = service.store.snapshot()
    out: list[Question] = []
    for ex in examples:
        vector = service.embedder.embed_query(ex.question)
        gold_doc = paragraph_id(ex.context)
        if setting == "open":
            segments = merge_passages(service.retrieve_passages(snap, ex.question, vector, service.settings.top_k))
        else:
            segments = [_Segment(gold_doc, 0, len(snap.document(gold_doc).text))]
        if not segments:
            continue
        documents = {s.doc_id: snap.document(s.doc_id) for s in segments}
        sentences = {d: snap.sentences(d) for d in documents}
        found = _read(service, ex.question, vector, segments, documents, sentences, head,
                      [t for _, t in ex.answers], gold_doc if setting == "open" else None)
        if found is not None:
            out.append((split_of(ex.dataset, ex.context), *found))
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
    for setting in ("gold", "open"):
        for name in FILES:
            with tempfile.TemporaryDirectory(prefix="newsroom-qa-ranking-") as tmp:
                service = _service(Path(tmp), seed_if_empty=False, reader="trained")
                by_file[f"{Path(name).name} ({setting})"] = candidates_of(service, args.data / name, head, setting)
    tune = [q for qs in by_file.values() for q in qs if q[0] == "tune"]
    x = np.vstack([f for _, f, _, _ in tune])
    y = np.concatenate([f1 >= 0.5 for _, _, f1, _ in tune])
    coef = LogisticRegression(max_iter=1000).fit(x, y).coef_[0]
    weights = coef / coef[0]
    print(f"fitted on {len(tune)} tune questions: score {coef[0]:.3f}, cosine {coef[1]:.3f}, word share "
          f"{coef[2]:.3f} -> weights {weights[1]:.2f}, {weights[2]:.2f}")
    rng = np.random.default_rng(0)
    shipped = SpanRanking.load(BUNDLED_READER)
    for name, questions in by_file.items():
        held = [q for q in questions if q[0] == "heldout"]
        f1_before, sent_before = outcome(held, np.array([1.0, 0.0, 0.0]))
        f1_shipped, sent_shipped = outcome(held, np.array([1.0, shipped.sentence_weight, shipped.coverage_weight]))
        f1_after, sent_after = outcome(held, weights)
        change = f1_after - f1_before
        boot = [rng.choice(change, len(change)).mean() for _ in range(2000)]
        print(f"{name} held-out ({len(held)} q): F1 never abstaining {100 * f1_before.mean():.2f} -> "
              f"{100 * f1_after.mean():.2f} (95% interval of the change {100 * np.percentile(boot, 2.5):+.2f} to "
              f"{100 * np.percentile(boot, 97.5):+.2f}; shipped weights {100 * f1_shipped.mean():.2f}); right "
              f"place {100 * sent_before.mean():.1f} -> {100 * sent_after.mean():.1f}% (shipped "
              f"{100 * sent_shipped.mean():.1f}%)")
    if args.write:
        names = ", ".join(by_file)
        SpanRanking(sentence_weight=round(float(weights[1]), 3), coverage_weight=round(float(weights[2]), 3),
                    candidates=head,
                    fitted_on=f"tune split of {names} ({len(tune)} answerable q, from the gold paragraph and over "
                              "an archive), benchmarks/span_ranking.py"
                    ).save(BUNDLED_READER)
        print(f"written to {BUNDLED_READER / 'ranking.json'}")


if __name__ == "__main__":
    main()
