"""A "who said ...?" answer the reader alone would withhold is given when the sentence quoting the question names its
speaker (``QAService.speaker_if_withheld``, confidence measured by ``benchmarks/speakers.py``), and only then: a
speaker that is no name ("the study") carries nothing."""

from __future__ import annotations

import pytest

from index.models import DocumentIn
from service.answering.readers.base import CandidateSentence, ReadResult
from tests.conftest import SEEDS_DIR, build_service, make_settings

pytestmark = pytest.mark.integration

ARTICLES = [
    DocumentIn(id="named", title="Council reopens the beach",
               text='The council met on Tuesday.Mayor Lena Kask spoke after the vote. "The water in the harbour is '
                    'safe to swim in again," Mayor Lena Kask said.'),
    DocumentIn(id="unnamed", title="Bay study published",
               text='A study of the bay was published on Monday. "The fish in the bay are safe to eat again," the '
                    'study said.'),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory, embedder, nlp, prompts):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("speaker-confidence")
    svc = build_service(make_settings(tmp / "data", seeds_dir=tmp / "none"), embedder, nlp, prompts)
    svc.add_documents(ARTICLES)
    return svc


def withheld(service, doc_id: str) -> ReadResult:  # type: ignore[no-untyped-def]
    """What a reader that found no answer sure enough returns: nothing, with the article's sentences as candidates."""
    snap = service.store.snapshot()
    text = snap.document(doc_id).text
    return ReadResult(answer=None, confidence=0.05, sentences=[
        CandidateSentence(doc_id=doc_id, start=s.start, end=s.end, text=text[s.start:s.end], score=1.0)
        for s in snap.sentences(doc_id)])


def test_the_rate_is_measured_and_clears_the_threshold(service) -> None:  # type: ignore[no-untyped-def]
    assert 0.0 < service.attributor.named_speaker_confidence < 1.0
    assert service.attributor.named_speaker_confidence >= service.reader.abstain_below


def test_a_named_speaker_is_given_at_the_measured_confidence(service) -> None:  # type: ignore[no-untyped-def]
    snap = service.store.snapshot()
    r = service.speaker_if_withheld("Who said the water in the harbour is safe to swim in?", withheld(service, "named"),
                                    snap)
    assert r.answer == "Lena Kask" and r.doc_id == "named"
    assert r.confidence == service.attributor.named_speaker_confidence
    text = snap.document("named").text
    assert text[r.answer_start:r.answer_end] == r.answer
    assert "safe to swim" in text[r.sentence_start:r.sentence_end]


def test_no_name_no_answer(service) -> None:  # type: ignore[no-untyped-def]
    snap = service.store.snapshot()
    before = withheld(service, "unnamed")
    after = service.speaker_if_withheld("Who said the fish in the bay are safe to eat?", before, snap)
    assert after == before  # "the study" is what the parse finds, and it is no name


def test_other_questions_and_weak_matches_are_left_alone(service) -> None:  # type: ignore[no-untyped-def]
    snap = service.store.snapshot()
    before = withheld(service, "named")
    assert service.speaker_if_withheld("When did the council meet?", before, snap) == before
    # a "who said" question the article's sentences do not hold half the words of
    assert service.speaker_if_withheld("Who said the ferry timetable would change next spring?", before, snap) == before


@pytest.mark.skipif(not list(SEEDS_DIR.glob("000_*")), reason="the seed articles are not in seeds/")
def test_on_the_seeds_with_the_open_calibration(tmp_path, embedder, nlp, prompts) -> None:  # type: ignore[no-untyped-def]
    """Over the seeds, with the calibration fitted over an archive, the reader's best span for this question is
    below its threshold; the question's sentence names Stuart Jones as its speaker."""
    svc = build_service(make_settings(tmp_path / "data", seeds_dir=SEEDS_DIR, reader_calibration="open"),
                        embedder, nlp, prompts)
    r = svc.ask("Who said past ceasefire failures gave the US reason to be skeptical of the de-escalation deal?")
    assert not r.abstained and r.answer is not None and "Jones" in r.answer, r
    assert r.confidence == svc.attributor.named_speaker_confidence
    assert "reason to be skeptical" in r.supporting_sentence
