"""Scraped pages as newsrooms feed them: debris before the headline, a caption printed twice, glued sentences.

Shown on a fictional page (tests/fixtures/scraped/) so that the mechanisms hold for pages other than the seeds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from index.pipeline.cleaning import clean_text, headline
from index.pipeline.indexer import DocumentPipeline
from index.pipeline.ingest import load_path
from index.pipeline.sentences import split_sentences

PAGE = Path(__file__).resolve().parents[1] / "fixtures" / "scraped" / "001_kellmoor-dam.txt"
HEADLINE = "Kellmoor Dam Inspectors Find Cracks In Spillway, Repairs Ordered"
CAPTION = "Inspectors walk along the Kellmoor dam spillway on Friday. (file photo)"


@pytest.fixture(scope="module")
def analysed(embedder, nlp, prompts):  # type: ignore[no-untyped-def]
    pipeline = DocumentPipeline(embedder, nlp, prompts.debris)
    return pipeline.analyse(load_path(PAGE)[0])


def test_the_headline_after_navigation_debris_is_the_title_without_a_sidecar(analysed):
    assert not PAGE.with_name(PAGE.stem + ".meta.json").exists()
    document, _, _ = analysed
    assert document.title == HEADLINE
    assert document.id == "001_kellmoor-dam"


def test_headline_is_the_first_line_left_after_cleaning(prompts):
    cleaned = clean_text(PAGE.read_text(encoding="utf-8"), prompts.debris)
    assert headline(cleaned) == HEADLINE
    assert headline("A" * 400 + "\n\nbody") is None


def test_debris_and_the_twice_printed_caption_go(prompts):
    raw = PAGE.read_text(encoding="utf-8")
    assert raw.count(CAPTION) == 2
    cleaned = clean_text(raw, prompts.debris)
    assert CAPTION not in cleaned
    for debris in ("Skip to main content", "Breaking News", "Share", "Photo: Kellmoor water board"):
        assert debris not in cleaned.splitlines()


def test_glued_sentences_are_each_their_own_sentence_with_exact_offsets(analysed):
    document, sentences, chunks = analysed
    quoted = [document.text[s.start:s.end] for s in sentences]
    expected = [
        "Ingrid Halvorsen, the board's chief engineer, said, \u201cThe cracks do not threaten the dam today,\u201d "
        "adding that the reservoir would be lowered by four metres.",
        "\u201cWe will not wait for the spring floods,\u201d said Oskar Brandt, the mayor of Kellmoor.",
        "In October, an independent survey by Damwatch estimated the repairs at between 3 and 5 million euros.",
        "Brandt said the board had acted quickly.",
        "\"The [board) must publish every report,\" said Lena Kask, a councillor.",
    ]
    for sentence in expected:
        assert sentence in quoted, sentence
    assert any(q.endswith("according to the regional safety office.") for q in quoted)
    # The stored text is not changed: the glued joins are still there, and every sentence is a trimmed slice.
    assert "safety office.Ingrid" in document.text and "Kellmoor.In October" in document.text
    for s in sentences:
        assert document.text[s.start:s.end] == document.text[s.start:s.end].strip() != ""
    assert all(a.end <= b.start for a, b in itertools.pairwise(sentences))
    for c in chunks:
        assert document.text[c.start:c.end] == c.text


@pytest.mark.parametrize("text, pieces", [
    ("He said.\u201dThe port reopened.", ["He said.\u201d", "The port reopened."]),
    ("Prices rose (by 4 percent).Officials were unsure?Nobody knew.",
     ["Prices rose (by 4 percent).", "Officials were unsure?", "Nobody knew."]),
    ("The U.S. Army left.It cost 3.5 million.", ["The U.S. Army left.", "It cost 3.5 million."]),
])
def test_glued_joins_of_every_kind(nlp, text, pieces):
    assert [text[s.start:s.end] for s in split_sentences(nlp, text)] == pieces
