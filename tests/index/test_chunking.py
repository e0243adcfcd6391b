"""Sentence-aware chunking keeps exact offsets into the stored text."""

from __future__ import annotations

import itertools

import pytest

from index.models import Sentence
from index.pipeline.chunking import chunk_document
from index.pipeline.cleaning import clean_text
from index.pipeline.sentences import split_sentences
from tests.conftest import FIXTURE_ARTICLES


@pytest.fixture(scope="module")
def article(prompts):
    return clean_text((FIXTURE_ARTICLES / "001_harbour-report.txt").read_text(encoding="utf-8"), prompts.debris)


@pytest.mark.integration
def test_sentences_have_exact_trimmed_offsets(nlp, article):
    sentences = split_sentences(nlp, article)
    assert len(sentences) >= 8
    for s in sentences:
        piece = article[s.start:s.end]
        assert piece == piece.strip() and piece
    texts = [article[s.start:s.end] for s in sentences]
    assert "Voss called on the port's shareholders to order an independent inspection of the pier." in texts
    # A paragraph break is always a sentence break: the headline is its own sentence.
    assert texts[0] == "Vellmont harbour authority accused of hiding toxic dumping"


@pytest.mark.integration
def test_chunks_quote_the_document_exactly_and_overlap(nlp, article):
    sentences = split_sentences(nlp, article)
    chunks = chunk_document("doc", article, sentences, max_chars=300, overlap_sentences=1)
    assert len(chunks) >= 3
    starts = {s.start for s in sentences}
    ends = {s.end for s in sentences}
    for chunk in chunks:
        assert chunk.text == article[chunk.start:chunk.end]
        assert chunk.start in starts and chunk.end in ends  # whole sentences only
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end  # one sentence of overlap
    assert chunks[0].start == sentences[0].start and chunks[-1].end == sentences[-1].end
    assert [c.chunk_id for c in chunks] == [f"doc#{i}" for i in range(len(chunks))]


def test_long_sentence_becomes_its_own_chunk():
    text = "Short one. " + "word " * 100 + "end. Last."
    sentences = [Sentence(start=0, end=10), Sentence(start=11, end=len(text) - 6),
                 Sentence(start=len(text) - 5, end=len(text))]
    chunks = chunk_document("d", text, sentences, max_chars=100, overlap_sentences=0)
    assert [(c.start, c.end) for c in chunks] == [(s.start, s.end) for s in sentences]


def test_chunking_rejects_bad_parameters():
    with pytest.raises(ValueError, match="max_chars"):
        chunk_document("d", "x", [], max_chars=10)
    with pytest.raises(ValueError, match="overlap"):
        chunk_document("d", "x", [], overlap_sentences=-1)
