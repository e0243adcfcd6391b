"""``QAService``: the one object behind the HTTP API, the CLI and (later) chat and Slack.

Built once at start-up from ``Settings``; every front end parses its input, calls a method here and formats the
pydantic model it gets back. Data flows one way: ingest -> chunk -> embed -> store -> retrieve -> read -> cite.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.archive import Archive
from index.archive import ArchiveSnapshot as Snapshot
from index.embedding.embedder import Embedder
from index.errors import InvalidInput, QAError
from index.local.ann import AnnSettings
from index.local.store import MergePolicy, Store
from index.models import Document, DocumentIn, Filters, Passage
from index.pipeline.indexer import Indexer
from index.pipeline.ingest import iter_paths, load_path, parse_file
from index.pipeline.sentences import load_nlp
from index.retrieval import RetrievalOptions, retrieve
from service.answering.attribution import Attributor, Speaker, load_attribution_rules
from service.answering.disagreement import differing_answers, same_claim
from service.answering.grounding import Grounding, load_grounding_rules
from service.answering.readers.base import Reader, ReadResult
from service.answering.readers.factory import build_reader
from service.malloc import trim_heap
from service.prompts import Prompts, load_prompts
from service.schemas import (
    AddDocumentsResponse,
    AlternativeAnswer,
    AnswerResponse,
    Citation,
    DocumentDetail,
    DocumentList,
    DocumentSummary,
    Recency,
    SearchResponse,
)
from service.settings import Settings

__all__ = ["QAService", "Retrieved", "build_embedder", "build_store"]

logger = logging.getLogger(__name__)
MAX_CORROBORATING = 2  # citations beyond the supporting sentence: other sentences that state the same answer


@dataclass(frozen=True)
class Retrieved:
    """Passages retrieved for one question, with the snapshot they came from and the question's embedding."""

    snap: Snapshot
    vector: np.ndarray
    passages: list[Passage]
    # The best passage of articles ranked below the passages with none among them: read only for what another
    # article says ("sources differ"), never for the answer itself.
    others: tuple[Passage, ...] = ()


def _summary(doc: Document) -> DocumentSummary:
    return DocumentSummary(id=doc.id, title=doc.title, source=doc.source, published=doc.published, url=doc.url,
                           chunks=doc.n_chunks)


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings describe (not loaded yet)."""
    return Embedder(settings.embedding_model, batch_size=settings.embedding_batch_size,
                    precision=settings.embedding_precision, query_cache_size=settings.query_cache_size,
                    query_backend=settings.query_backend, cache_dir=settings.cache_dir,
                    batch_backend=settings.batch_backend, defer_torch=settings.defer_embedding_model)


def build_store(settings: Settings, embedder: Embedder) -> Archive:
    """The archive the settings name (a data directory, or PostgreSQL), for this embedder's vectors."""
    if settings.backend == "postgres":
        from index.postgres.store import PgStore

        assert settings.database_url is not None  # checked by Settings
        return PgStore(settings.database_url, model_id=embedder.model_id, dimension=embedder.dimension,
                       read_dsn=settings.database_read_url, pool_size=settings.database_pool_size,
                       bm25_k1=settings.bm25_k1, bm25_b=settings.bm25_b, ef_search=settings.database_ef_search)
    return Store(settings.data_dir, model_id=embedder.model_id, dimension=embedder.dimension,
                 bm25_k1=settings.bm25_k1, bm25_b=settings.bm25_b,
                 ann_settings=AnnSettings(exact_max=settings.exact_search_max,
                                          target_recall=settings.ann_target_recall, codes=settings.ann_codes,
                                          min_probe_fraction=settings.ann_min_probe_fraction,
                                          refine_min=settings.ann_refine_min),
                 merge_policy=MergePolicy(segments_per_tier=settings.merge_segments_per_tier,
                                          floor_chunks=settings.merge_floor_chunks),
                 merges=settings.segment_merges)


def other_articles(ranked: list[Passage], k: int, n: int) -> list[Passage]:
    """The best-ranked passage of up to ``n`` articles that have none among the first ``k`` passages."""
    seen = {p.doc_id for p in ranked[:k]}
    found: list[Passage] = []
    for p in ranked[k:]:
        if len(found) >= n:
            break
        if p.doc_id not in seen:
            seen.add(p.doc_id)
            found.append(p)
    return found


class QAService:
    """Answers questions about the stored articles with short, cited, verbatim answers."""

    def __init__(self, settings: Settings, prompts: Prompts, store: Archive, indexer: Indexer,
                 embedder: Embedder, reader: Reader, attributor: Attributor | None = None,
                 grounding: Grounding | None = None) -> None:
        self.settings = settings
        self.attributor = attributor
        self.grounding = grounding
        self.prompts = prompts
        self.store = store
        self.indexer = indexer
        self.embedder = embedder
        self.reader = reader

    @classmethod
    def from_settings(cls, settings: Settings, seed_if_empty: bool = True) -> QAService:
        """Load the models and open the data directory; index the bundled seeds into an empty one."""
        prompts = load_prompts(settings.prompts_dir)
        embedder = build_embedder(settings)
        embedder.warm_up()
        nlp = load_nlp(settings.spacy_model)
        store = build_store(settings, embedder)
        indexer = Indexer(store, embedder, nlp, prompts.debris, settings.chunk_max_chars,
                          settings.chunk_overlap_sentences)
        attributor = Attributor(nlp, load_attribution_rules(settings.prompts_dir / "attribution.toml"))
        reader = build_reader(settings, embedder, nlp, prompts, attributor)
        grounding = Grounding(nlp, load_grounding_rules(settings.prompts_dir / "grounding.toml"))
        service = cls(settings, prompts, store, indexer, embedder, reader, attributor, grounding)
        was_new = not store.exists()
        store.snapshot()  # opens (or creates) the data dir now, so a bad one fails at start-up
        if seed_if_empty and was_new:
            service.add_seeds()
        return service

    # --- writing -------------------------------------------------------------------------------------
    def add_seeds(self) -> AddDocumentsResponse:
        """Index the bundled seed articles (``seeds/``), if there are any; those stored unchanged are left alone."""
        seeds = self.settings.seeds_dir
        if not seeds.is_dir() or not any(iter_paths([seeds])):
            logger.warning("no seed articles in %s; starting with an empty archive", seeds)
            return AddDocumentsResponse(documents=[])
        logger.info("indexing the seed articles in %s", seeds)
        # In batches: an article already stored as it is in seeds/ is skipped, not embedded again.
        return self.add_paths([seeds], batch_size=256)

    def add_documents(self, docs: list[DocumentIn], show_progress: bool = False) -> AddDocumentsResponse:
        """Clean, chunk, embed and store articles in one atomic write; an existing id is replaced."""
        if not docs:
            raise InvalidInput("no documents given")
        return AddDocumentsResponse(documents=self.indexer.add(docs, show_progress=show_progress))

    def add_files(self, files: list[tuple[str, bytes]]) -> AddDocumentsResponse:
        """Parse uploaded files (txt, md, html, jsonl) and store every article in them, all or none."""
        docs = [doc for name, data in files for doc in parse_file(name, data)]
        return self.add_documents(docs)

    def add_paths(self, paths: list[Path], show_progress: bool = False,
                  batch_size: int | None = None) -> AddDocumentsResponse:
        """Read article files and directories (with ``.meta.json`` sidecars) and store them: all or none, or with
        ``batch_size`` one atomic write per batch, skipping articles already stored unchanged (resumable)."""
        docs = [doc for path in iter_paths(paths) for doc in load_path(path)]
        if not docs:
            raise InvalidInput(f"no article files found in {', '.join(str(p) for p in paths)}")
        if batch_size is not None:
            return AddDocumentsResponse(documents=self.indexer.add_in_batches(docs, batch_size, show_progress))
        return self.add_documents(docs, show_progress=show_progress)

    def add_paths_on_dask(self, paths: list[Path], client: Any, batch_size: int = 32,
                          show_progress: bool = False) -> AddDocumentsResponse:
        """``add_paths`` with the cleaning, chunking and embedding done by the Dask workers behind ``client``;
        one atomic write per batch, resumable (articles stored unchanged are not embedded again)."""
        from index.pipeline.distributed import PipelineSpec, ingest

        docs = [doc for path in iter_paths(paths) for doc in load_path(path)]
        if not docs:
            raise InvalidInput(f"no article files found in {', '.join(str(p) for p in paths)}")
        s = self.settings
        spec = PipelineSpec(embedding_model=s.embedding_model, embedding_batch_size=s.embedding_batch_size,
                            embedding_precision=s.embedding_precision, batch_backend=s.batch_backend,
                            spacy_model=s.spacy_model,
                            debris=self.prompts.debris, chunk_max_chars=s.chunk_max_chars,
                            chunk_overlap_sentences=s.chunk_overlap_sentences)
        return AddDocumentsResponse(documents=ingest(client, self.store, spec, docs, batch_size, show_progress))

    def release_write_memory(self) -> None:
        """After a write in a long-running process: drop the bulk embedding engine (``Embedder.release_batch_engine``)
        and return the heap's free pages to the system (``malloc.trim_heap``), so the memory of the largest upload
        is not kept for the life of the server."""
        self.embedder.release_batch_engine()
        trim_heap()

    def delete_documents(self, doc_ids: list[str]) -> None:
        """Remove documents and their chunks, all or none. :raises DocumentNotFound: if one is not stored."""
        self.indexer.remove(doc_ids)

    def delete_document(self, doc_id: str) -> None:
        """Remove one document and its chunks. :raises DocumentNotFound: if it is not stored."""
        self.delete_documents([doc_id])

    # --- reading -------------------------------------------------------------------------------------
    def list_documents(self, limit: int = 100, offset: int = 0) -> DocumentList:
        if not (1 <= limit <= 1000 and 0 <= offset <= 2**31):
            raise InvalidInput(f"limit must be 1-1000 and offset 0-2^31; got limit={limit}, offset={offset}")
        snap = self.store.snapshot()
        return DocumentList(documents=[_summary(d) for d in snap.documents(limit, offset)],
                            total=snap.manifest.n_documents)

    def get_document(self, doc_id: str) -> DocumentDetail:
        doc = self.store.snapshot().document(doc_id)
        return DocumentDetail(**_summary(doc).model_dump(), text=doc.text)

    def check_question(self, text: str, what: str = "question") -> str:
        """The question trimmed. :raises InvalidInput: when it is empty or longer than the configured limit."""
        question = text.strip()
        errors = self.prompts.templates.errors
        if not question:
            raise InvalidInput(errors["empty_question"] if what == "question" else f"The {what} is empty.")
        if len(question) > self.settings.max_question_chars:
            raise InvalidInput(errors["question_too_long"].format(length=len(question),
                                                                  limit=self.settings.max_question_chars))
        return question

    def _check_top_k(self, top_k: int | None) -> int:
        value = self.settings.top_k if top_k is None else top_k
        if not 1 <= value <= self.settings.max_top_k:
            raise InvalidInput(self.prompts.templates.errors["top_k_range"].format(
                limit=self.settings.max_top_k, value=value))
        return value

    def retrieve_passages(self, snap: Snapshot, query: str, vector: np.ndarray, top_k: int,
                          filters: Filters | None = None, recency: Recency | None = None,
                          explain: bool = False) -> list[Passage]:
        """The ranking step alone, on a given snapshot (``search`` and ``ask`` are built on it; so is evaluation)."""
        s = self.settings
        options = RetrievalOptions(fusion=s.fusion, alpha=s.fusion_alpha, doc_weight=s.lexical_doc_weight,
                                   dense_doc_weight=s.dense_doc_weight, feedback_terms=s.feedback_terms,
                                   feedback_weight=s.feedback_weight, candidates=s.retrieval_candidates)
        if recency is not None:
            options.recency_half_life_days, options.recency_weight = recency.half_life_days, recency.weight
        return retrieve(snap, query, vector, top_k, filters, options, explain)

    def search(self, query: str, top_k: int | None = None, filters: Filters | None = None,
               recency: Recency | None = None, explain: bool = False) -> SearchResponse:
        """The most relevant passages for ``query`` (hybrid lexical + dense), best first."""
        query = self.check_question(query, what="query")
        snap = self.store.snapshot()
        vector = self.embedder.embed_query(query)
        return SearchResponse(results=self.retrieve_passages(snap, query, vector, self._check_top_k(top_k), filters,
                                                     recency, explain))

    def close(self) -> None:
        """Close the archive (its database pool, for the postgres backend); the models need nothing."""
        self.store.close()

    def ask(self, question: str, top_k: int | None = None, filters: Filters | None = None,
            recency: Recency | None = None) -> AnswerResponse:
        """Answer with a short span quoted from a stored article, or abstain when the archive does not say."""
        question = self.check_question(question)
        return self.answer(question, self.retrieve(question, top_k, filters, recency))

    def retrieve(self, question: str, top_k: int | None = None, filters: Filters | None = None,
                 recency: Recency | None = None) -> Retrieved:
        """The first half of ``ask``: passages for a checked question, on one snapshot (chat streams them)."""
        snap = self.store.snapshot()
        vector = self.embedder.embed_query(question)  # once: for retrieval and for the reader
        k, n_others = self._check_top_k(top_k), self.settings.other_articles
        ranked = self.retrieve_passages(snap, question, vector, 2 * k if n_others else k, filters, recency)
        return Retrieved(snap=snap, vector=vector, passages=ranked[:k],
                         others=tuple(other_articles(ranked, k, n_others)))

    def answer(self, question: str, retrieved: Retrieved) -> AnswerResponse:
        """The second half of ``ask``: read the retrieved passages and cite the answer."""
        snap, passages = retrieved.snap, retrieved.passages
        result = self.read(question, passages, snap, retrieved.vector)
        if result.answer is not None and retrieved.others:
            # What the next article says, read apart: beside the answer if it differs, never in its place.
            theirs = self.reader.run(question, list(retrieved.others), snap, question_vector=retrieved.vector)
            if theirs.best_guess is not None and theirs.best_guess.doc_id != result.doc_id:
                result = result.model_copy(update={"alternatives": [*result.alternatives, theirs.best_guess]})
        return self.cite(snap, result, passages)

    def read(self, question: str, passages: list[Passage], snap: Snapshot,
             vector: np.ndarray | None = None) -> ReadResult:
        """The reading step: the reader's answer (or, withheld, a named speaker for a "who said" question), kept
        only if its article names what the question names, with the speaker as the answer for "who said" questions."""
        read = self.reader.run(question, passages, snap, question_vector=vector)
        result = self.speaker_if_withheld(question, read, snap)
        if result.answer is not None and result.doc_id is not None and self.grounding is not None:
            missing = self.grounding.missing(question, snap.document(result.doc_id).text)
            action = None if missing else self.grounding.missing_action(question, self._around(snap, result))
            if missing or action:
                logger.info("abstaining: the answer's %s", f"article does not mention {', '.join(missing)}"
                            if missing else f"sentences say nothing of {action!r}")
                result = ReadResult(answer=None, confidence=result.confidence, sentences=result.sentences,
                                    best_guess=result.best_guess)
        return result if result is not read else self.attribute(question, result, snap)

    @staticmethod
    def _around(snap: Snapshot, result: ReadResult) -> str:
        """The answer's sentence with the one before and the one after."""
        assert result.doc_id is not None and result.sentence_start is not None and result.sentence_end is not None
        sentences = snap.sentences(result.doc_id)
        held = [i for i, s in enumerate(sentences) if s.start < result.sentence_end and s.end > result.sentence_start]
        if not held:
            return ""
        first, last = max(0, held[0] - 1), min(len(sentences) - 1, held[-1] + 1)
        return snap.document(result.doc_id).text[sentences[first].start:sentences[last].end]

    def speaker_if_withheld(self, question: str, result: ReadResult, snap: Snapshot) -> ReadResult:
        """A "who said ...?" answer the reader withheld, given after all when one of the candidate sentences holds
        most of the question's words and its speaker is named: such answers are right at a rate of their own,
        whatever the reader's span (``named_speaker_confidence``, measured by ``benchmarks/speakers.py``). Returns
        ``result`` itself when it gives nothing."""
        if self.attributor is None or result.answer is not None or not result.sentences \
                or not self.attributor.asks_for_speaker(question):
            return result
        confidence = self.attributor.named_speaker_confidence
        if confidence <= result.confidence or confidence < float(getattr(self.reader, "abstain_below", 0.5)):
            return result
        quoted = self.attributor.quoted_sentence(question, [(c.doc_id, c.start, c.text) for c in result.sentences])
        if quoted is None:
            return result
        doc_id, s_start, s_end = quoted
        doc = snap.document(doc_id)
        found = self.attributor.speaker(doc.text, snap.sentences(doc_id), s_start, s_end)
        if found is None or not found.named:
            return result
        return self._with_speaker(result, snap, doc, s_start, s_end, found).model_copy(
            update={"confidence": confidence})

    def attribute(self, question: str, result: ReadResult, snap: Snapshot) -> ReadResult:
        """For "who said ..." questions, answer with the speaker the reporting verb names, not the quote.

        The quoted sentence is the candidate sentence sharing most words with the question (the question repeats
        the quote), which is a surer guide than where the reader's span fell.
        """
        if self.attributor is None or result.answer is None or result.doc_id is None \
                or result.sentence_start is None or result.sentence_end is None \
                or not self.attributor.asks_for_speaker(question):
            return result
        doc_id, s_start, s_end = self.attributor.quoted_sentence(
            question, [(c.doc_id, c.start, c.text) for c in result.sentences]) \
            or (result.doc_id, result.sentence_start, result.sentence_end)
        doc = snap.document(doc_id)
        found = self.attributor.speaker(doc.text, snap.sentences(doc.id), s_start, s_end)
        return result if found is None else self._with_speaker(result, snap, doc, s_start, s_end, found)

    @staticmethod
    def _with_speaker(result: ReadResult, snap: Snapshot, doc: Document, s_start: int, s_end: int,
                      found: Speaker) -> ReadResult:
        """``result`` answered by the speaker ``found`` for the sentence ``doc.text[s_start:s_end]``.

        The quote must show the speaker: it is widened to the sentence that names them ("... ," Jones said.) when
        that is another one. A pronoun or a title ("The Assistant Secretary said") is resolved to a name further
        back; the sentence that gives the name is then cited as well (``cite``), not everything in between."""
        stored = snap.sentences(doc.id)
        quote_at = next((i for i, s in enumerate(stored) if s.start < s_end and s.end > s_start), 0)
        for point in (found.mention_start, found.start):
            at = next((i for i, s in enumerate(stored) if s.start <= point < s.end), None)
            if at is not None and abs(at - quote_at) <= 1:
                s_start, s_end = min(s_start, stored[at].start), max(s_end, stored[at].end)
        return result.model_copy(update={"answer": doc.text[found.start:found.end], "doc_id": doc.id,
                                         "answer_start": found.start, "answer_end": found.end,
                                         "sentence_start": s_start, "sentence_end": s_end, "alternatives": []})

    # --- citing --------------------------------------------------------------------------------------
    @staticmethod
    def _citation(doc: Document, start: int, end: int) -> Citation:
        if not 0 <= start < end <= len(doc.text):
            raise QAError(f"internal error: citation {doc.id}[{start}:{end}] is outside the document")
        quote = doc.text[start:end]
        return Citation(doc_id=doc.id, title=doc.title, source=doc.source, published=doc.published, url=doc.url,
                        start=start, end=end, quote=quote)

    def cite(self, snap: Snapshot, result: ReadResult, passages: list[Passage]) -> AnswerResponse:
        """Turn the reader's verdict into the response: verbatim quotes of the snapshot's articles."""
        http = self.prompts.templates.http
        if result.answer is None or result.doc_id is None or result.sentence_start is None \
                or result.sentence_end is None:
            message = http["empty_archive"] if snap.manifest.n_documents == 0 else http["abstain"]
            return AnswerResponse(answer=None, abstained=True, confidence=result.confidence,
                                  supporting_sentence=None, citations=[], passages=passages, message=message)
        doc = snap.document(result.doc_id)
        citations = [self._citation(doc, result.sentence_start, result.sentence_end)]
        if result.answer_start is not None and result.answer_end is not None \
                and not result.sentence_start <= result.answer_start < result.answer_end <= result.sentence_end:
            # The speaker named further back than the quote: cite the sentence that names them too.
            naming = next(s for s in snap.sentences(doc.id) if s.start <= result.answer_start < s.end)
            citations.append(self._citation(doc, naming.start, max(naming.end, result.answer_end)))
        needle = result.answer.casefold()
        for cand in result.sentences:
            if len(citations) > MAX_CORROBORATING:
                break
            if needle in cand.text.casefold() and cand.doc_id not in {c.doc_id for c in citations}:
                citations.append(self._citation(snap.document(cand.doc_id), cand.start, cand.end))
        alternatives = self._differing(snap, result)
        return AnswerResponse(answer=result.answer, answer_start=result.answer_start, answer_end=result.answer_end,
                              abstained=False, confidence=result.confidence,
                              supporting_sentence=citations[0].quote, citations=citations, passages=passages,
                              message=http["answer"].format(answer=result.answer),
                              sources_differ=bool(alternatives), alternatives=alternatives)

    def _differing(self, snap: Snapshot, result: ReadResult) -> list[AlternativeAnswer]:
        """Other articles' answers that contradict this one about the same claim, each quoted from its own article."""
        if result.best_guess is None or not result.alternatives:
            return []
        threshold = float(getattr(self.reader, "abstain_below", 0.5))
        best = result.best_guess
        claim = snap.document(best.doc_id).text[best.sentence_start:best.sentence_end]
        return [AlternativeAnswer(answer=a.answer, confidence=a.confidence, citation=citation)
                for a in differing_answers(best, result.alternatives, threshold)
                if same_claim(claim, (citation := self._citation(snap.document(a.doc_id), a.sentence_start,
                                                                 a.sentence_end)).quote)]
