"""The bundled seed articles: the example question and the shared development questions.

These run only where the seed articles (``seeds/000_*.txt`` and ``seeds/004_*.txt``) are present, and the dev set
only where ``../shared`` is beside the checkout.
"""

from __future__ import annotations

import json

import pytest

from service.answering.readers.squad_metrics import holds_accepted
from tests.conftest import SEEDS_DIR, SHARED_DIR, build_service, make_settings

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (list(SEEDS_DIR.glob("000_*")) and list(SEEDS_DIR.glob("004_*"))),
                                 reason="the seed articles 000_* and 004_* are not in seeds/")]
DEV = SHARED_DIR / "seeds_dev_questions.jsonl"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, settings_for, embedder, nlp, prompts):
    """The seeds on each backend in turn (faiss, postgres)."""
    settings = settings_for(tmp_path_factory.mktemp("seeds"), seeds_dir=SEEDS_DIR)
    return build_service(settings, embedder, nlp, prompts)


def test_both_backends_give_the_same_answers_on_the_seeds(tmp_path, pg_server, embedder, nlp, prompts):
    faiss = build_service(make_settings(tmp_path / "f", seeds_dir=SEEDS_DIR), embedder, nlp, prompts)
    dsn = pg_server.create_database("seeds_same_answers")
    postgres = build_service(make_settings(tmp_path / "p", seeds_dir=SEEDS_DIR, backend="postgres",
                                           database_url=dsn), embedder, nlp, prompts)
    questions = ["Who doubted the crematorium claim?"]
    if DEV.exists():
        questions += [json.loads(line)["q"] for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    for q in questions:
        a, b = faiss.ask(q), postgres.ask(q)
        assert (a.answer, a.abstained, [(c.doc_id, c.start, c.end) for c in a.citations]) == \
            (b.answer, b.abstained, [(c.doc_id, c.start, c.end) for c in b.citations]), q


def test_example_question_answers_from_the_second_seed(seeded):
    r = seeded.ask("Who doubted the crematorium claim?")
    assert not r.abstained
    # The second article: human rights groups found the photographs not conclusive, Amnesty's Geoffrey Mock wants more
    # research, the UN's Paulo Pinheiro has no information concerning the crematorium: each voiced doubt.
    assert any(k in r.answer for k in ("human rights groups", "Amnesty", "Mock", "Pinheiro"))
    assert r.citations[0].doc_id.startswith("004")
    assert not r.sources_differ  # the other article names other people about other things: no disagreement
    doc = seeded.get_document(r.citations[0].doc_id)
    assert doc.text[r.citations[0].start:r.citations[0].end] == r.citations[0].quote == r.supporting_sentence


@pytest.mark.skipif(not DEV.exists(), reason="../shared/seeds_dev_questions.jsonl is not present")
def test_dev_questions(seeded):
    """Every development question right (the seeds issue's acceptance): an answer holding an accepted one with at
    most four other words, or an abstention where the seeds do not answer (as benchmarks/seeds_dev.py judges)."""
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    wrong = []
    for row in rows:
        r = seeded.ask(row["q"])
        ok = holds_accepted(None if r.abstained else r.answer, row["any"])
        if not ok:
            wrong.append(f"{row['id']} {row['q']!r}: {'abstained' if r.abstained else repr(r.answer)}")
    print(f"seed dev questions: {len(rows) - len(wrong)}/{len(rows)} right")
    assert not wrong, wrong


def test_amnesty_death_toll_differs_between_the_seeds(seeded):
    """One seed says 'between 5,000 and 11,000', the other 'between 5,000 and 13,000': both are shown."""
    r = seeded.ask("How many people did Amnesty International say were killed at Saydnaya?")
    assert not r.abstained and r.sources_differ
    answers = [r.answer or "", *(a.answer for a in r.alternatives)]
    assert any("11,000" in a for a in answers) and any("13,000" in a for a in answers)
    for alt in r.alternatives:
        c = alt.citation
        assert seeded.get_document(c.doc_id).text[c.start:c.end] == c.quote


def test_speaker_attribution_on_the_seeds(seeded):
    r = seeded.ask("Who said there still needs to be a lot of research done?")
    assert not r.abstained and r.answer == "Geoffrey Mock"
    doc = seeded.get_document(r.citations[0].doc_id)
    assert doc.text[r.answer_start:r.answer_end] == r.answer
