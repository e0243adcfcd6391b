"""Spans ranked by how close their sentence is to the question as well as by the span model's score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.answering.readers.span_ranking import SpanRanking, word_coverage

QUESTION = "Who opened the harbour bridge?"
ABOUT_THE_BRIDGE = "Ilse Varga, the mayor, opened the harbour bridge in March."
ELSEWHERE = "Tomas Berglund coaches the town's football team on Sundays."
POOL = [ABOUT_THE_BRIDGE, ELSEWHERE, "The harbour was dredged last winter.", "Fishing boats use the harbour."]


def test_a_span_in_the_sentence_about_the_question_overtakes_a_higher_score(embedder) -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return embedder.embed_few(texts)

    question = embedder.embed_query(QUESTION)
    scores = [9.0, 8.5, 8.4, 3.0]  # the span model prefers a name in the unrelated sentence
    sentences = [ELSEWHERE, ABOUT_THE_BRIDGE, ELSEWHERE]

    def order(ranking: SpanRanking, values: list[float] = scores) -> list[int]:
        return ranking.order(values, sentences, QUESTION, question, embed, lambda: POOL)

    assert order(SpanRanking(sentence_weight=7.4)) == [1, 0, 2, 3]  # the 4th keeps its place
    assert calls == [[ELSEWHERE, ABOUT_THE_BRIDGE]]  # each distinct sentence embedded once
    assert order(SpanRanking(coverage_weight=2.0)) == [1, 0, 2, 3]  # the question's words alone do it too
    assert len(calls) == 1  # ... without embedding anything
    weak = SpanRanking(sentence_weight=0.6)  # the similarity gap is worth less than the score gap
    assert order(weak) == [0, 1, 2, 3]
    assert calls[1] == [ELSEWHERE, ABOUT_THE_BRIDGE]  # the third (0.6 below the best) could not overtake it
    assert order(SpanRanking()) == [0, 1, 2, 3]  # no weights: nothing embedded
    assert order(SpanRanking(sentence_weight=2.0, coverage_weight=2.0), [9.0, 4.0, 3.0]) == [0, 1, 2]  # out of reach
    assert SpanRanking(sentence_weight=7.4).order([9.0, 8.9], [ELSEWHERE, ELSEWHERE], QUESTION, question, embed,
                                                  lambda: POOL) == [0, 1]  # one sentence lifts both alike
    assert len(calls) == 2


def test_word_coverage_weighs_rare_words_of_the_passages_up() -> None:
    about, elsewhere, harbour = word_coverage(QUESTION, [ABOUT_THE_BRIDGE, ELSEWHERE, POOL[2]], POOL)
    assert about == pytest.approx(1.0) and elsewhere == 0.0
    assert 0.0 < harbour < 0.5  # "harbour" is in three of the four sentences: it weighs less than "bridge"
    assert word_coverage("Who?", [ABOUT_THE_BRIDGE], POOL) == [0.0]  # no content word asked


def test_the_weights_are_saved_beside_the_model_and_absent_mean_the_model_order(tmp_path: Path) -> None:
    assert SpanRanking.load(tmp_path) == SpanRanking()
    SpanRanking(sentence_weight=6.0, coverage_weight=1.5, fitted_on="test").save(tmp_path)
    assert SpanRanking.load(tmp_path) == SpanRanking(sentence_weight=6.0, coverage_weight=1.5, fitted_on="test")


def test_the_shipped_reader_ranks_by_sentence_with_its_fitted_weights(service, embedder, nlp, prompts) -> None:
    from service.answering.readers.factory import build_reader
    from service.answering.readers.transformer import BUNDLED_READER, TransformerReader

    shipped = SpanRanking.load(BUNDLED_READER)
    assert shipped.sentence_weight > 0 and shipped.coverage_weight > 0
    assert "benchmarks/span_ranking.py" in shipped.fitted_on
    reader = service.reader
    if not isinstance(reader, TransformerReader):
        pytest.skip("the service under test runs another reader")
    assert reader.ranking == shipped and reader.embed is not None
    settings = service.settings.model_copy(update={"reader_span_ranking": False})
    assert build_reader(settings, embedder, nlp, prompts).ranking is None  # type: ignore[attr-defined]


def test_few_texts_embed_as_the_archive_does(embedder) -> None:
    texts = [ABOUT_THE_BRIDGE, ELSEWHERE, "Short."]
    few, batch = embedder.embed_few(texts), embedder.embed(texts)
    assert few.shape == batch.shape and few.dtype == np.float32
    assert np.allclose(np.linalg.norm(few, axis=1), 1.0, atol=1e-5)
    assert float((few * batch).sum(axis=1).min()) > 0.999  # padded together, each as if alone
