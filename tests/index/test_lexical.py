"""BM25 with stemming, stopwords and spelling variants."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from index.local.lexical import LexicalIndex
from index.tokens import tokenize

TEXTS = ["The Saydnaya military prison lies north of Damascus.",
         "Weather reports for Damascus and Aleppo.",
         "Apples and pears were harvested in Kent.",
         "The prisoners were moved at night."]


def index() -> LexicalIndex:
    return LexicalIndex.build(TEXTS, np.array([10, 11, 12, 13]), doc_texts=TEXTS, doc_of_chunk=np.arange(4))


def test_tokenize_folds_stems_and_drops_stopwords():
    assert tokenize("The PRISONERS were moved to Sédnaya prisons") == ["prison", "were", "move", "sednaya", "prison"]


def test_bm25_ranks_matching_chunks_by_row_id():
    hits = [r for r, _ in index().search("prison in Damascus", top_k=4)]
    assert hits[0] == 10  # the only chunk with both words
    assert set(hits) == {10, 11, 13}  # 12 shares no word and gets no score


def test_transliterated_name_matches_its_variant():
    lexical = index()
    assert lexical.variants("sednaya") == ["saydnaya"]
    hits = lexical.search("Sednaya", top_k=3)
    assert hits and hits[0][0] == 10


def test_typo_in_a_name_still_matches():
    assert index().search("Damascuss weather", top_k=1)[0][0] == 11


def test_variants_skip_short_and_common_words():
    assert index().variants("pear") == []  # too short to expand safely
    texts = [f"Report {i} from the prison." for i in range(300)] + ["The Saydnaya prison."]
    lexical = LexicalIndex.build(texts, np.arange(len(texts)))
    assert lexical.variants("prisen") == []  # "prison" is in every chunk: a common word, not a rare name
    assert lexical.variants("sednaya") == ["saydnaya"]


def test_allowed_restricts_results():
    assert [r for r, _ in index().search("Damascus", top_k=4, allowed=np.array([11]))] == [11]


def test_empty_index_scores_nothing():
    empty = LexicalIndex.build([], np.array([], dtype=np.int64))
    assert empty.search("anything", top_k=3) == []


def test_doc_weight_mixes_in_the_whole_article():
    chunks = ["Storm hits the coast.", "Damage was limited.", "Storm warning: storm storm storm."]
    lexical = LexicalIndex.build(chunks, np.array([1, 2, 3]), doc_texts=[" ".join(chunks[:2]), chunks[2]],
                                 doc_of_chunk=np.array([0, 0, 1]))
    chunk_only = lexical.scores("storm damage", doc_weight=0.0)
    mixed = lexical.scores("storm damage", doc_weight=0.5)
    assert chunk_only[2] > chunk_only[0]  # alone, the chunk repeating "storm" wins
    assert mixed[0] > mixed[2]  # but the article that covers both words lifts its own chunk above it


def test_feedback_adds_words_of_the_best_articles():
    texts = ["Storm brings flood to the river valley; evacuation ordered.",
             "River flood forces evacuation of the valley shelters.",
             "Parliament debates the budget.",
             "Budget talks stall in parliament again."]
    lexical = LexicalIndex.build(texts, np.arange(4), doc_texts=texts, doc_of_chunk=np.arange(4))
    plain = lexical.scores("storm", feedback_terms=0)
    expanded = lexical.scores("storm", feedback_terms=3, feedback_weight=0.5)
    assert plain[1] == 0 and expanded[1] > 0  # shares no query word, but the best article's words
    assert expanded[2] == 0 and expanded[3] == 0  # unrelated articles stay out
    assert int(np.argmax(expanded)) == 0


def test_row_ids_in_any_order_find_their_scores_and_articles():
    rowids = np.array([40, 7, 19, 3], dtype=np.int64)  # not sorted: positions follow this order
    index = LexicalIndex.build(["saydnaya prison", "wheat harvest", "prison visit", "budget vote"], rowids,
                               doc_texts=["a", "b"], doc_of_chunk=np.array([1, 0, 1, 0]))
    scores = index.scores("prison")
    got = index.scores_of(scores, [19, 40, 999, 7])
    assert got[0] > 0 and got[1] > 0 and got[2] == 0.0 and got[3] == 0.0
    assert got[0] == scores[2] and got[1] == scores[0]
    assert index.doc_positions([3, 40]).tolist() == [0, 1]
    with pytest.raises(KeyError):
        index.doc_positions([999])


def test_bm25s_logs_at_the_applications_level_not_its_own_debug():
    """bm25s sets its logger to DEBUG on import; the CLI printed "Building index from tokens" on every add."""
    index()
    root = logging.getLogger()
    saved = root.level
    try:
        root.setLevel(logging.WARNING)
        assert not logging.getLogger("bm25s").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved)


def test_folding_strips_the_same_marks_as_decomposing_each_character():
    """``_fold``'s fast paths (ASCII text as it is, a translate table for the rest) give what the plain definition
    gives: NFKD, then every combining character dropped, over text from many scripts."""
    import random
    import unicodedata

    from index.tokens import _fold

    def plain(text: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))

    rng = random.Random(4)
    samples = ["Sédnaya SEDNAYA Saydnaya", "plain ASCII only", "Kelvin \u212a sign", "ﬁnance ﬂow", "Ǆemal Ⅻ",
               "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(20_000)),
               "".join(chr(rng.randrange(0x20, 0x110000)) for _ in range(5_000)).encode("utf-8", "replace")
               .decode("utf-8", "replace")]
    for text in samples:
        assert _fold(text) == plain(text)
