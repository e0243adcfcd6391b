"""Who said what in the bundled seed articles (issue 26): speaker attribution, "what did X say", a follow-up about a
named person, the Amnesty death toll the two articles report differently, and questions they do not answer.

The questions are phrased the way a journalist would ask them, lightly paraphrasing the articles. The first seed
(``000_*``, 2017-05-15) quotes Stuart Jones, Staffan de Mistura and Assad; the second (``004_*``, 2017-05-16) quotes
Nikki Haley, Amnesty's Geoffrey Mock and the UN's Paulo Pinheiro. One faiss service is built for the module.
"""

from __future__ import annotations

import pytest

from service.newsroom import Newsroom
from service.schemas import AnswerResponse
from tests.conftest import SEEDS_DIR, build_service, make_settings

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (list(SEEDS_DIR.glob("000_*")) and list(SEEDS_DIR.glob("004_*"))),
                                 reason="the seed articles 000_* and 004_* are not in seeds/")]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, embedder, nlp, prompts) -> Newsroom:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path_factory.mktemp("seeds-people"), seeds_dir=SEEDS_DIR)
    return Newsroom.around(build_service(settings, embedder, nlp, prompts))


def describe(r: AnswerResponse) -> str:
    """What the service answered, for the failure message (the core engineer reads this)."""
    cited = [f"{c.doc_id}[{c.start}:{c.end}]" for c in r.citations]
    quote = r.citations[0].quote if r.citations else None
    alternatives = [(a.answer, a.citation.doc_id) for a in r.alternatives]
    return (f"answered {r.answer!r} (abstained={r.abstained}, confidence={r.confidence:.2f}, cited {cited}, "
            f"quote {quote!r}, sources_differ={r.sources_differ}, alternatives={alternatives})")


def check_verbatim(seeded: Newsroom, r: AnswerResponse) -> None:
    """Every quote is the article's text at its offsets; the answer is a span of the first article quoted, inside
    one of its quotes (the first, or the one naming a speaker the first calls "he" or by a title)."""
    for c in r.citations:
        assert seeded.get_document(c.doc_id).text[c.start:c.end] == c.quote, describe(r)
    if r.answer is not None:
        first = r.citations[0]
        assert seeded.get_document(first.doc_id).text[r.answer_start:r.answer_end] == r.answer, describe(r)
        assert any(c.doc_id == first.doc_id and c.start <= (r.answer_start or -1) and (r.answer_end or 1 << 30) <= c.end
                   for c in r.citations), describe(r)


# --- who said it ----------------------------------------------------------------------------------------------------
# (question, the speaker's name as the article gives it, the only article that reports it (None: both), words of the
# statement that the cited sentence must contain)
WHO_SAID = [
    ("Who said Assad's government has sunk to a new level of depravity?", "Jones", "000", "depravity"),
    ("Who said the crematorium was an effort to cover up the extent of the mass murders?", "Jones", "000",
     "extent of mass murders"),
    ("Who said past ceasefire failures gave the US reason to be skeptical of the de-escalation deal?", "Jones", None,
     "reason to be skeptical"),
    ("Who said covering up the mass murders in the crematorium recalls the 20th century's worst offenses against "
     "humanity?", "Nikki Haley", "004", "reminiscent"),
    ("Who at Amnesty said a lot more research still needs to be done?", "Geoffrey Mock", "004", "research"),
    ("Who said they don't have any information concerning this crematorium?", "Paulo Pinheiro", "004",
     "information concerning this crematorium"),
    ("Which UN official said he had no information about the crematorium?", "Paulo Pinheiro", "004",
     "information concerning this crematorium"),
    ("Who said the Geneva discussions should benefit from a tighter format?", "Staffan de Mistura", "000",
     "tighter format"),
    ("Who called the Geneva talks merely a meeting for the media?", "Assad", "000", "meeting for the media"),
    ("Who is sceptical that the US government will act on the new information about the detainees' deaths?",
     "Robert Ford", "004", "sceptical"),
]


@pytest.mark.parametrize(("question", "speaker", "article", "statement"), WHO_SAID, ids=[q for q, *_ in WHO_SAID])
def test_who_said_it(seeded: Newsroom, question: str, speaker: str, article: str | None, statement: str) -> None:
    r = seeded.ask(question)
    assert not r.abstained and r.answer, describe(r)
    assert speaker in r.answer, describe(r)
    assert statement.lower() not in r.answer.lower(), "the answer is the statement, not who made it: " + describe(r)
    first = r.citations[0]
    assert statement.lower() in first.quote.lower(), describe(r)
    assert article is None or first.doc_id.startswith(article), describe(r)
    check_verbatim(seeded, r)


# --- what did they say ----------------------------------------------------------------------------------------------
# (question, the speaker as the cited sentence names them, words of their statement the answer must contain, article)
WHAT_SAID = [
    ("What did Nikki Haley say about the crematorium?", "Haley", ("reminiscent", "worst offenses"), "004"),
    ("What did Geoffrey Mock of Amnesty say about the crematorium claim?", "Mock", ("research",), "004"),
    ("What did Staffan de Mistura say about the Geneva talks?", "de Mistura", ("tighter format",), "000"),
    ("What did Pinheiro say about the crematorium?", "Pinheiro", ("any information",), "004"),
]


@pytest.mark.parametrize(("question", "speaker", "statement", "article"), WHAT_SAID, ids=[q for q, *_ in WHAT_SAID])
def test_what_did_they_say(seeded: Newsroom, question: str, speaker: str, statement: tuple[str, ...],
                           article: str) -> None:
    r = seeded.ask(question)
    assert not r.abstained and r.answer, describe(r)
    assert any(words.lower() in r.answer.lower() for words in statement), describe(r)
    first = r.citations[0]
    assert first.doc_id.startswith(article) and speaker in first.quote, describe(r)
    check_verbatim(seeded, r)


# --- a follow-up about the person just named -----------------------------------------------------------------------
# (first question, the person it is answered with, follow-up with a pronoun, the pronoun, words one of which the
# follow-up's answer or cited sentence must contain)
CONVERSATIONS = [
    ("Who is the US ambassador to the United Nations?", "Nikki Haley", "What did she say about the crematorium?",
     "she", ("reminiscent", "worst offenses")),
    ("Who chairs the UN tribunal compiling evidence of possible war crimes?", "Paulo Pinheiro",
     "What did he say about the crematorium?", "he", ("any information",)),
    pytest.param("Who is the top U.S. diplomat for the Middle East?", "Stuart Jones",
                 "What did he say about the de-escalation zones?", "he",
                 ("skeptical", "reservations", "not optimistic"),
                 marks=pytest.mark.xfail(strict=True, reason="known gap: the follow-up is resolved to Stuart Jones and "
                                         "read in what he said about the zones ('He also voiced reservations about a "
                                         "deal ...'), but the reader's best span there stays below the abstention "
                                         "threshold (0.21 < 0.31 with the open calibration, the default; 0.29 < "
                                         "0.31 with the gold one)")),
]


@pytest.mark.parametrize(("first_question", "person", "follow_up", "pronoun", "statement"), CONVERSATIONS,
                         ids=["Nikki Haley", "Paulo Pinheiro", "Stuart Jones"])
def test_a_follow_up_about_the_person_named(seeded: Newsroom, first_question: str, person: str, follow_up: str,
                                            pronoun: str, statement: tuple[str, ...]) -> None:
    first = seeded.chat_service.turn(None, first_question)
    assert not first.abstained and first.answer and person in first.answer, describe(first)
    second = seeded.chat_service.turn(first.conversation_id, follow_up)
    assert second.turn == 2 and second.conversation_id == first.conversation_id
    resolved = second.resolved_question
    assert person in resolved and f" {pronoun} " not in f" {resolved.lower()} ", resolved
    assert not second.abstained and second.answer, f"{resolved!r}: {describe(second)}"
    said = f"{second.answer} {second.citations[0].quote}".lower()
    assert any(words.lower() in said for words in statement), f"{resolved!r}: {describe(second)}"
    check_verbatim(seeded, second)


# --- the Amnesty death toll: the two articles differ -----------------------------------------------------------------
# A first phrasing is tested in tests/test_seeds.py (test_amnesty_death_toll_differs_between_the_seeds).
@pytest.mark.parametrize("question", [
    "How many people did Amnesty International say died at Saydnaya prison?",
    "According to Amnesty, how many detainees were hanged at Sednaya between 2011 and 2015?",
])
def test_amnesty_death_toll_differs_between_the_seeds_in_other_words(seeded: Newsroom, question: str) -> None:
    """The first seed reports 'between 5,000 and 11,000', the second 'between 5,000 and 13,000': one answer cites
    each article."""
    r = seeded.ask(question)
    assert not r.abstained and r.answer and r.sources_differ, describe(r)
    answers = [(r.answer, r.citations[0].doc_id), *((a.answer, a.citation.doc_id) for a in r.alternatives)]
    assert any("11,000" in a and doc.startswith("000") for a, doc in answers), describe(r)
    assert any("13,000" in a and doc.startswith("004") for a, doc in answers), describe(r)
    check_verbatim(seeded, r)
    for alt in r.alternatives:
        c = alt.citation
        assert seeded.get_document(c.doc_id).text[c.start:c.end] == c.quote


# --- what the articles do not say --------------------------------------------------------------------------------
# (question, words one of which a nearest passage contains: the passages are about the subject asked after)
UNANSWERABLE = [
    ("What is the name of the director of Saydnaya prison?", ("Saydnaya", "Sednaya")),
    ("How much did the crematorium cost to build?", ("crematorium",)),
    ("Who designed the crematorium at the prison?", ("crematorium",)),
]


@pytest.mark.parametrize(("question", "subject"), UNANSWERABLE, ids=["director", "cost", "designer"])
def test_unanswerable_questions_abstain_with_the_nearest_passages(seeded: Newsroom, question: str,
                                                                  subject: tuple[str, ...]) -> None:
    r = seeded.ask(question)
    assert r.abstained and r.answer is None and r.citations == [], describe(r)
    assert r.passages, "an abstention still shows the nearest passages"
    assert any(word.lower() in p.text.lower() for p in r.passages for word in subject)
    for p in r.passages:
        assert seeded.get_document(p.doc_id).text[p.start:p.end] == p.text
