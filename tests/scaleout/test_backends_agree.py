"""Both backends, the same articles: the same answers, citations and ranking."""

from __future__ import annotations

import pytest

from tests.conftest import build_service, make_settings

pytestmark = pytest.mark.integration

QUESTIONS = ["Who doubted the pipeline claim?", "Who said the authority had reached a new low?",
             "In which month did the Fishermen's Guild report the fall in catches?", "Who is the mayor of Vellmont?",
             "What did Voss call on the shareholders to do?", "What is the capital of France?",
             "How many pipelines has the mayor built in Ostrava Point?"]


def test_the_same_answers_citations_and_passages_on_both_backends(tmp_path, pg_dsn, embedder, nlp, prompts):
    faiss = build_service(make_settings(tmp_path / "f"), embedder, nlp, prompts)
    postgres = build_service(make_settings(tmp_path / "p", backend="postgres", database_url=pg_dsn), embedder, nlp,
                             prompts)
    for q in QUESTIONS:
        a, b = faiss.ask(q), postgres.ask(q)
        assert (a.answer, a.abstained, a.supporting_sentence) == (b.answer, b.abstained, b.supporting_sentence), q
        assert [(c.doc_id, c.start, c.end) for c in a.citations] == [(c.doc_id, c.start, c.end) for c in b.citations]
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
        ra, rb = faiss.search(q, top_k=5, explain=True), postgres.search(q, top_k=5, explain=True)
        assert [p.chunk_id for p in ra.results] == [p.chunk_id for p in rb.results], q
        for pa, pb in zip(ra.results, rb.results, strict=True):
            assert pa.scores.fused == pytest.approx(pb.scores.fused, abs=1e-4)
