"""Cleaning of web-page debris, shown on a page-shaped fixture and, when present, on the seed article 000."""

from __future__ import annotations

import pytest

from index.pipeline.cleaning import clean_text
from tests.conftest import FIXTURE_ARTICLES, SEEDS_DIR

RAW = (FIXTURE_ARTICLES / "001_harbour-report.txt").read_text(encoding="utf-8")
CAPTION = "A barge unloading at the Vellmont east pier on Tuesday"


def test_clean_removes_navigation_lines(prompts):
    cleaned = clean_text(RAW, prompts.debris)
    for debris in ("Accessibility links", "Skip to content", "Breaking News", "Share this with", "Facebook"):
        assert debris in RAW
        assert debris not in cleaned.splitlines()


def test_clean_removes_photo_caption_shown_twice(prompts):
    assert RAW.count(CAPTION) == 2
    assert CAPTION not in clean_text(RAW, prompts.debris)


def test_clean_keeps_article_text(prompts):
    cleaned = clean_text(RAW, prompts.debris)
    assert cleaned.startswith("Vellmont harbour authority accused of hiding toxic dumping\n\n")
    assert "said Clara Voss, the head of the regional environment office." in cleaned
    assert cleaned.rstrip().endswith("Ostrava Point is the capital of the Marren province, where the estuary lies.")


def test_clean_normalises_whitespace_and_control_characters(prompts):
    cleaned = clean_text("Title\r\n\r\n\r\nA  line\twith\x00 junk\u200b.\n\n\n\nNext   paragraph.", prompts.debris)
    assert cleaned == "Title\n\nA line with junk.\n\nNext paragraph."


def test_clean_keeps_long_repeated_paragraphs(prompts):
    long_para = "This long paragraph is article text. " * 15
    cleaned = clean_text(f"{long_para}\n\nMiddle.\n\n{long_para}", prompts.debris)
    assert cleaned.count(long_para.strip()) == 2


def test_long_line_that_looks_like_a_credit_is_kept(prompts):
    abstract = ("\u00a9 Joanna Example 2013. All rights reserved. A challenging reappraisal of the history of a "
                "class of drugs, revealing how they were transformed from poisons into cures.")
    assert clean_text(abstract, prompts.debris) == abstract
    assert clean_text("\u00a9 Example News 2017", prompts.debris) == ""


def test_clean_of_only_debris_is_empty(prompts):
    assert clean_text("Accessibility links\nBreaking News\n\nShare", prompts.debris) == ""


SEED_000 = sorted(SEEDS_DIR.glob("000_*.txt"))


@pytest.mark.skipif(not SEED_000, reason="seed article seeds/000_*.txt is not in this checkout")
def test_clean_seed_000_debris(prompts):
    raw = SEED_000[0].read_text(encoding="utf-8")
    cleaned = clean_text(raw, prompts.debris)
    lines = cleaned.splitlines()
    assert "Accessibility links" not in lines
    assert "Breaking News" not in lines
    repeated = [line for line in lines if line.strip() and len(line) < 400 and lines.count(line) > 1]
    assert repeated == []
