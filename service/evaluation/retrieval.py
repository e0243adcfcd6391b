"""``newsroom-qa eval retrieval``: nDCG@10, recall@10/100 and MRR@10 of lexical, dense and hybrid retrieval.

Collections are ingested through the product's own pipeline (cleaning, sentence chunking, embedding, BM25) into a
temporary data directory; documents are then ranked by their best chunk ("max-passage"), so long documents are
scored whole rather than truncated to the model's window. Metrics come from ``ir-measures`` (trec_eval's
definitions). Layouts read:

- BEIR: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``;
- SMART (TIME): ``TIME.ALL``, ``TIME.QUE``, ``TIME.REL``; judgments number articles by position in TIME.ALL;
- SMART (Cranfield): ``cran.all.1400``, ``cran.qry``, ``cranqrel``; judgments number queries by position;
- SQuAD-format QA (NewsQA): question -> the chunks of its story that contain the answer (chunk-level recall).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ir_measures
from ir_measures import RR, R, nDCG
from pydantic import BaseModel

from index.errors import InvalidInput
from index.local.lexical import LexicalIndex
from index.local.store import Snapshot
from index.models import DocumentIn
from index.retrieval import RetrievalOptions, rank_chunks
from service.answering.qa import QAService

__all__ = ["Collection", "evaluate", "load_beir", "load_cranfield", "load_squad_retrieval", "load_time"]

MEASURES = [nDCG @ 10, R @ 5, R @ 10, R @ 100, RR @ 10]


class Collection(BaseModel):
    """Documents, queries and graded judgments; ``level`` says whether judgments name documents or chunks."""

    name: str
    documents: list[DocumentIn]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> {document id (or answer text for chunk level): grade}
    level: str = "document"


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _safe_id(raw: str) -> str:
    """A BEIR id as a document id: other characters become '-', and it starts with a letter or digit (DBpedia's
    ids are ``<dbpedia:Name>``)."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", raw).strip("-._:")[:128] or "x"


def load_beir(path: Path, split: str = "test") -> Collection:
    """A BEIR collection; only queries with judgments in ``qrels/<split>.tsv`` are kept."""
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        raise InvalidInput(f"{qrels_file} not found: is {path} a BEIR directory with a {split!r} split?")
    qrels: dict[str, dict[str, int]] = {}
    for line in qrels_file.read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, grade = line.split("\t")[:3]
        if int(grade) > 0:
            qrels.setdefault(qid, {})[_safe_id(did)] = int(grade)
    queries = {str(q["_id"]): q["text"] for q in _read_jsonl(path / "queries.jsonl") if str(q["_id"]) in qrels}
    docs = [DocumentIn(id=_safe_id(str(d["_id"])), title=d.get("title") or str(d["_id"]), text=d["text"])
            for d in _read_jsonl(path / "corpus.jsonl") if d.get("text", "").strip()]
    return Collection(name=f"beir:{path.name}:{split}", documents=docs, queries=queries, qrels=qrels)


def _require(path: Path, names: tuple[str, ...], layout: str) -> None:
    """Refuse a directory that lacks one of the files of its layout, naming it."""
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise InvalidInput(f"{path / missing[0]} not found: is {path} {layout} ({', '.join(names)})?")


def load_time(path: Path) -> Collection:
    """The TIME collection (SMART layout); judgments point at articles by their 1-based position.

    TIME.ALL double-spaces its hard-wrapped lines: a blank line follows every line and nothing marks a paragraph.
    Those blank lines are layout, so each article is joined into one paragraph; kept, they would make every
    70-character line a paragraph, and paragraphs are sentence breaks, so chunks would end mid-clause.
    """
    _require(path, ("TIME.ALL", "TIME.QUE", "TIME.REL"), "the TIME collection")
    texts = re.split(r"^\*TEXT\s+\d+.*$", (path / "TIME.ALL").read_text(encoding="latin-1"), flags=re.M)[1:]
    docs = []
    for i, raw in enumerate(texts, start=1):
        body = " ".join(raw.replace("*STOP", "").split())
        if body:
            docs.append(DocumentIn(id=f"time-{i:03d}", title=f"TIME article {i}", text=body.lower()))
    known = {d.id for d in docs}
    queries = {}
    for block in re.split(r"^\*FIND\s+", (path / "TIME.QUE").read_text(encoding="latin-1"), flags=re.M)[1:]:
        number, _, text = block.partition("\n")
        if text.strip() and "*STOP" not in text[:6]:
            queries[number.strip()] = " ".join(text.replace("*STOP", "").split()).lower()
    qrels: dict[str, dict[str, int]] = {}
    for line in (path / "TIME.REL").read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) > 1:
            judged = {f"time-{int(p):03d}": 1 for p in parts[1:] if f"time-{int(p):03d}" in known}
            if judged:
                qrels[parts[0]] = judged
    return Collection(name="time", documents=docs, queries={q: t for q, t in queries.items() if q in qrels},
                      qrels=qrels)


def _smart_fields(block: str) -> dict[str, str]:
    """The ``.X`` fields of one SMART record (``.T`` title, ``.W`` text, ...), whitespace collapsed."""
    fields: dict[str, str] = {}
    for part in re.split(r"^\.(?=[A-Z]\b)", block, flags=re.M)[1:]:
        tag, _, text = part.partition("\n")
        fields[tag.strip()] = " ".join(text.split())
    return fields


def load_cranfield(path: Path) -> Collection:
    """The Cranfield collection (SMART layout): a topical, multi-judgment set outside the news domain, scored
    as a dev collection for document-level ranking (it is no target's test set).

    ``cranqrel`` numbers queries by their position in ``cran.qry`` (whose ``.I`` ids skip numbers); its grades run
    1 (complete answer) to 4 (minimal interest), -1 not relevant, so the gain is ``5 - grade``.
    """
    _require(path, ("cran.all.1400", "cran.qry", "cranqrel"), "the Cranfield collection")
    docs = []
    for block in re.split(r"^\.I\s+", (path / "cran.all.1400").read_text(encoding="latin-1"), flags=re.M)[1:]:
        number, _, rest = block.partition("\n")
        fields = _smart_fields(rest)
        if fields.get("W"):
            docs.append(DocumentIn(id=f"cran-{int(number):04d}", title=fields.get("T") or f"Cranfield {number}",
                                   text=fields["W"]))
    queries = {}
    for position, block in enumerate(re.split(r"^\.I\s+", (path / "cran.qry").read_text(encoding="latin-1"),
                                              flags=re.M)[1:], start=1):
        text = _smart_fields(block.partition("\n")[2]).get("W", "")
        if text:
            queries[str(position)] = text
    known = {d.id for d in docs}
    qrels: dict[str, dict[str, int]] = {}
    for line in (path / "cranqrel").read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) >= 3 and 1 <= int(parts[2]) <= 4 and f"cran-{int(parts[1]):04d}" in known:
            qrels.setdefault(parts[0], {})[f"cran-{int(parts[1]):04d}"] = 5 - int(parts[2])
    return Collection(name="cranfield", documents=docs, queries={q: t for q, t in queries.items() if q in qrels},
                      qrels=qrels)


def load_squad_retrieval(path: Path, half: str | None = None, level: str = "chunk") -> Collection:
    """A SQuAD-format file as retrieval: stories are documents; a question's relevant chunks hold its answer.

    :param half: ``dev`` (even-numbered questions, for tuning), ``test`` (odd), or None for all.
    :param level: ``chunk`` (the chunks of the story that hold the answer) or ``document`` (the story).
    """
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    docs, queries, qrels = [], {}, {}
    n = 0
    for a, article in enumerate(data):
        for p, para in enumerate(article["paragraphs"]):
            doc_id = f"story-{a}-{p}"
            docs.append(DocumentIn(id=doc_id, title=article.get("title") or doc_id, text=para["context"]))
            for qa in para["qas"]:
                answers = [x["text"] for x in qa.get("answers", []) if x["text"].strip()]
                if not answers:
                    continue
                n += 1
                if (half == "dev" and n % 2) or (half == "test" and not n % 2):
                    continue
                queries[str(qa["id"])] = qa["question"]
                # chunk level: a chunk of this story that holds the (first) answer; document level: the story
                qrels[str(qa["id"])] = {f"{doc_id}\x00{answers[0]}" if level == "chunk" else doc_id: 1}
    return Collection(name=f"{path.stem}{'-' + half if half else ''}", documents=docs, queries=queries,
                      qrels=qrels, level=level)


def _run(service: QAService, collection: Collection, options: RetrievalOptions) -> dict[str, dict[str, float]]:
    snap = service.store.snapshot()
    chunk_of = snap.chunk_spans()
    texts: dict[str, str] = {}
    # One at a time through the service's own query path (ONNX Runtime when it matches, else PyTorch), not the batch
    # engine that embedded the documents: the figures are then the service's, whatever BATCH_BACKEND ingested with.
    vectors = [service.embedder.embed_query(query) for query in collection.queries.values()]
    run: dict[str, dict[str, float]] = {}
    for (qid, query), vector in zip(collection.queries.items(), vectors, strict=True):
        ranked = rank_chunks(snap, query, vector, None, options)
        scores: dict[str, float] = {}
        for rowid, fused, _, _ in ranked:
            doc_id, start, end = chunk_of[rowid]
            if collection.level == "document":
                scores[doc_id] = max(scores.get(doc_id, float("-inf")), fused)  # max-passage
            else:
                if doc_id not in texts:
                    texts[doc_id] = snap.document(doc_id).text
                credited = False
                for key in collection.qrels[qid]:
                    gold_doc, _, answer = key.partition("\x00")
                    if gold_doc == doc_id and answer in texts[doc_id][start:end]:
                        credited = True
                        scores[key] = max(scores.get(key, float("-inf")), fused)
                if not credited:  # an unjudged chunk still takes a rank
                    scores[f"{doc_id}#{rowid}"] = fused
        run[qid] = scores
    return run


def evaluate(service: QAService, collection: Collection, grid: list[RetrievalOptions] | None = None,
             depth: int = 300, bm25_grid: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """Ingest the collection into ``service`` (unless it is there already) and score every retrieval mode.

    :param grid: settings of the weighted fusion to score; default: the configured ones.
    :param bm25_grid: (k1, b) pairs: the hybrid grid is scored again with each (the stored term counts serve any
        parameters; the service keeps its configured ones).
    """
    snap = service.store.snapshot()
    if not all(snap.has_document(d.id or "") for d in collection.documents):
        service.add_documents(collection.documents, show_progress=True)
    qrels = [ir_measures.Qrel(q, d, g) for q, judged in collection.qrels.items() for d, g in judged.items()]
    s = service.settings
    tuned = RetrievalOptions(alpha=s.fusion_alpha, doc_weight=s.lexical_doc_weight, dense_doc_weight=s.dense_doc_weight,
                             feedback_terms=s.feedback_terms, feedback_weight=s.feedback_weight)
    base = {"candidates": depth, "group_duplicates": False}
    modes: list[tuple[str, RetrievalOptions]] = [
        ("lexical (BM25, chunks)", RetrievalOptions(fusion="lexical", **base)),
        (f"lexical (BM25, doc_weight={s.lexical_doc_weight})",
         RetrievalOptions(fusion="lexical", doc_weight=s.lexical_doc_weight, **base)),
        ("dense (max-passage)", RetrievalOptions(fusion="dense", **base)),
        (f"dense (dense_doc_weight={s.dense_doc_weight})",
         RetrievalOptions(fusion="dense", dense_doc_weight=s.dense_doc_weight, **base)),
        ("plain RRF of BM25 + dense", RetrievalOptions(fusion="rrf", **base))]
    for options in grid or [tuned]:
        label = (f"hybrid alpha={options.alpha} doc_weight={options.doc_weight} "
                 f"dense_doc_weight={options.dense_doc_weight}")
        if options.feedback_terms:
            label += f" feedback={options.feedback_terms}x{options.feedback_weight}"
        modes.append((label, options.model_copy(update=base)))
    report: dict[str, Any] = {"collection": collection.name, "documents": len(collection.documents),
                              "queries": len(collection.queries), "level": collection.level, "results": {}}
    def score(label: str, options: RetrievalOptions) -> None:
        run = _run(service, collection, options)
        scored = [ir_measures.ScoredDoc(q, d, s) for q, docs in run.items() for d, s in docs.items()]
        metrics = ir_measures.calc_aggregate(MEASURES, qrels, scored)
        report["results"][label] = {str(m): round(float(v), 4) for m, v in metrics.items()}

    for label, options in modes:
        score(label, options)
    snap = service.store.snapshot()
    if bm25_grid and not isinstance(snap, Snapshot):
        raise InvalidInput("the BM25 parameter sweep runs on the faiss backend (a data directory) only")
    for k1, b in bm25_grid or []:
        assert isinstance(snap, Snapshot)
        snap.lexical = LexicalIndex(snap.lexical.parts, k1=k1, b=b)  # BM25 parameters apply at query time
        score(f"lexical (BM25 k1={k1} b={b}, chunks)", modes[0][1])
        for label, options in modes[5:]:
            score(f"{label} bm25 k1={k1} b={b}", options)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A markdown table of one report."""
    names = [str(m) for m in MEASURES]
    lines = [f"{report['collection']}: {report['documents']} documents, {report['queries']} queries "
             f"({report['level']} level)", "", "| mode | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for label, metrics in report["results"].items():
        lines.append(f"| {label} | " + " | ".join(f"{metrics.get(n, 0):.3f}" for n in names) + " |")
    return "\n".join(lines)
