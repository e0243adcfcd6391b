"""``newsroom-qa eval reader``: exact match, F1, abstention and calibration of the configured reader.

Two modes over a SQuAD v1.1/v2.0-format file (only its ``heldout`` split by default, see ``readers/squad_data``):

- ``gold``: each paragraph is stored as an article and the reader is given its whole text as the passage, so the
  figure measures reading alone (``QAService.read``: reader, name check, speaker attribution) through the same
  offsets path the service uses;
- ``open``: every paragraph of the file is stored, and each question goes through retrieval + reader, as a user's
  would; also scored: whether the cited article is the paragraph the question was written on.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from index.models import DocumentIn, Passage
from service.answering.qa import QAService
from service.answering.readers.calibration import article_ranks
from service.answering.readers.squad_data import Split, SquadExample, load_squad
from service.answering.readers.squad_metrics import normalize_answer, score_prediction

__all__ = ["QuestionResult", "evaluate_reader", "format_reader_report", "reliability_plot"]

RIGHT_F1 = 0.5  # an answer counts as right for calibration when its F1 reaches this


class QuestionResult(BaseModel):
    id: str
    answerable: bool
    prediction: str  # "" when the reader abstained
    best_guess: str  # the top candidate even when withheld
    confidence: float
    em: float
    f1: float
    guess_f1: float
    sentence_right: bool | None  # answerable and answered: does the supporting sentence hold a gold answer?
    doc_right: bool | None  # open mode, answered: is the cited article the gold paragraph?
    doc_rank: int | None = None  # answered: the cited article's place among the articles retrieved (0: the first)
    # the best confidence the reader found in each article retrieved above the answer's, where its confidence
    # weighs them (``ReadResult.ranked_above``): what ``calibrate-reader --open --with-rank`` fits
    ranked_above: list[float] | None = None
    reader_ms: float


def paragraph_id(context: str) -> str:
    return "p" + hashlib.sha1(context.encode("utf-8")).hexdigest()[:16]


def _documents(examples: Iterable[SquadExample]) -> list[DocumentIn]:
    seen: dict[str, DocumentIn] = {}
    for ex in examples:
        pid = paragraph_id(ex.context)
        if pid not in seen:
            seen[pid] = DocumentIn(id=pid, title=f"{ex.dataset} paragraph {pid}", text=ex.context, source=ex.dataset)
    return list(seen.values())


def evaluate_reader(service: QAService, path: Path, mode: Literal["gold", "open"] = "gold",
                    splits: tuple[Split, ...] = ("heldout",), limit: int | None = None,
                    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it) -> dict[str, Any]:
    """Run the reader over the file's questions and return the report (figures + per-question results)."""
    examples = load_squad(path, splits)
    if limit is not None:
        examples = examples[:limit]
    stored = load_squad(path) if mode == "open" else examples
    service.add_documents(_documents(stored), show_progress=True)
    snap = service.store.snapshot()
    results: list[QuestionResult] = []
    for ex in progress(examples):
        pid = paragraph_id(ex.context)
        vector = service.embedder.embed_query(ex.question)
        if mode == "gold":
            doc = snap.document(pid)
            passages = [Passage(doc_id=pid, title=doc.title, chunk_id=f"{pid}:all", text=doc.text, start=0,
                                end=len(doc.text), score=1.0)]
        else:
            passages = service.retrieve_passages(snap, ex.question, vector, service.settings.top_k)
        started = time.perf_counter()
        read = service.read(ex.question, passages, snap, vector)
        reader_ms = (time.perf_counter() - started) * 1000
        golds = [text for _, text in ex.answers] if not ex.is_impossible else []
        prediction = read.answer or ""
        em, f1 = score_prediction(golds, prediction)
        guess = read.best_guess.answer if read.best_guess else prediction
        _, guess_f1 = score_prediction(golds, guess) if guess else (0.0, 0.0)
        sentence_right = doc_right = doc_rank = None
        if read.answer is not None and read.doc_id is not None:
            doc_rank = article_ranks(p.doc_id for p in passages).get(read.doc_id)
            sentence = snap.document(read.doc_id).text[read.sentence_start:read.sentence_end]
            if golds:
                sentence_right = any(normalize_answer(g) in normalize_answer(sentence) for g in golds)
            if mode == "open":
                doc_right = read.doc_id == pid
        results.append(QuestionResult(
            id=ex.id, answerable=bool(golds), prediction=prediction, best_guess=guess, confidence=read.confidence,
            em=em, f1=f1, guess_f1=guess_f1 if golds else 0.0, sentence_right=sentence_right, doc_right=doc_right,
            doc_rank=doc_rank, ranked_above=read.ranked_above, reader_ms=reader_ms))
    return {"file": str(path), "mode": mode, "splits": list(splits), "reader": service.reader.name,
            "abstain_below": getattr(service.reader, "abstain_below", None),
            "calibration": service.settings.reader_calibration,
            "figures": summarize(results), "questions": [r.model_dump() for r in results]}


def _mean(values: list[float]) -> float | None:
    return round(100 * statistics.fmean(values), 2) if values else None


def summarize(results: list[QuestionResult]) -> dict[str, Any]:
    """EM/F1 overall and split by HasAns/NoAns, sentence accuracy, document accuracy, calibration, latency."""
    has = [r for r in results if r.answerable]
    no = [r for r in results if not r.answerable]
    answered = [r for r in results if r.prediction]
    latencies = sorted(r.reader_ms for r in results)
    bins = calibration_bins(results)
    figures: dict[str, Any] = {
        "questions": len(results), "answered": len(answered),
        "exact": _mean([r.em for r in results]), "f1": _mean([r.f1 for r in results]),
        "HasAns_exact": _mean([r.em for r in has]), "HasAns_f1": _mean([r.f1 for r in has]),
        "NoAns_accuracy": _mean([r.em for r in no]),
        "f1_never_abstaining": _mean([r.guess_f1 for r in has] + [0.0] * len(no)),
        "sentence_accuracy": _mean([float(bool(r.sentence_right)) for r in has if r.sentence_right is not None]),
        "document_accuracy": _mean([float(bool(r.doc_right)) for r in answered if r.doc_right is not None]),
        "expected_calibration_error": round(sum(b["n"] * abs(b["confidence"] - b["accuracy"]) for b in bins)
                                            / max(1, len(results)), 4),
        "reader_ms_p50": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "reader_ms_p95": round(latencies[int(len(latencies) * 0.95)], 1) if latencies else None,
        "reliability": bins,
    }
    return figures


def calibration_bins(results: list[QuestionResult], n_bins: int = 10) -> list[dict[str, float]]:
    """Per confidence decile: mean confidence and the share of top candidates that were right (F1 >= 0.5)."""
    bins: list[dict[str, float]] = []
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [r for r in results if lo <= r.confidence < hi or (b == n_bins - 1 and r.confidence == 1.0)]
        if inside:
            bins.append({"low": lo, "high": hi, "n": len(inside),
                         "confidence": round(statistics.fmean(r.confidence for r in inside), 4),
                         "accuracy": round(statistics.fmean(float(r.guess_f1 >= RIGHT_F1) for r in inside), 4)})
    return bins


def reliability_plot(report: dict[str, Any], out: Path) -> Path:
    """A reliability diagram (PNG): confidence against the share of right answers, per decile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report["figures"]["reliability"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=report["reader"][-40:])
    for b in bins:
        ax.annotate(str(b["n"]), (b["confidence"], b["accuracy"]), fontsize=7, xytext=(3, -9),
                    textcoords="offset points")
    ax.set_xlabel("confidence")
    ax.set_ylabel(f"share right (F1 >= {RIGHT_F1})")
    ax.set_title(f"{Path(report['file']).name} ({report['mode']})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def format_reader_report(report: dict[str, Any]) -> str:
    f = report["figures"]
    keys = ["questions", "answered", "exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_accuracy",
            "f1_never_abstaining", "sentence_accuracy", "document_accuracy", "expected_calibration_error",
            "reader_ms_p50", "reader_ms_p95"]
    lines = [f"{report['reader']} on {report['file']} ({report['mode']} context, {'+'.join(report['splits'])})"]
    lines += [f"  {k:<28} {f[k]}" for k in keys if f.get(k) is not None]
    return "\n".join(lines)


def format_reader_table(reports: list[dict[str, Any]]) -> str:
    """A markdown table of several reports (one row per file, mode and reader)."""
    rows = ["| set | mode | reader | questions | EM | F1 | HasAns F1 | NoAns acc. | sentence acc. | right doc | ECE "
            "| reader ms p50 |", "|" + "---|" * 12]
    for r in reports:
        f = r["figures"]
        mode = r["mode"] + (" (open calibration)" if r.get("calibration") == "open" else "")
        rows.append(f"| {Path(r['file']).name} | {mode} | {r['reader'].rsplit('/', 1)[-1]} | {f['questions']} "
                    f"| {f['exact']} | {f['f1']} | {f['HasAns_f1']} | {f['NoAns_accuracy'] or '-'} "
                    f"| {f['sentence_accuracy']} | {f['document_accuracy'] or '-'} "
                    f"| {f['expected_calibration_error']} | {f['reader_ms_p50']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import json
    import sys

    print(format_reader_table([json.loads(Path(p).read_text(encoding="utf-8")) for p in sys.argv[1:]]))
