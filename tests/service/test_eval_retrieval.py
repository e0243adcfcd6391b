"""`newsroom-qa eval retrieval` on tiny collections written by the test in each supported layout."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from service.cli import cli

pytestmark = pytest.mark.integration

DOCS = {"d1": ("Harbour dumping", "The harbour authority dumped sludge into the estuary."),
        "d2": ("Apple harvest", "Farmers picked three hundred tonnes of apples in Dell."),
        "d3": ("Bridge repairs", "The old bridge closes in June for repairs, the council said.")}


def test_beir_layout(tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": k, "title": t, "text": x})
                                                  for k, (t, x) in DOCS.items()))
    (beir / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in [
        {"_id": "q1", "text": "sludge in the estuary"}, {"_id": "q2", "text": "when does the bridge close"},
        {"_id": "q3", "text": "not judged"}]))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["eval", "retrieval", "--beir", str(beir), "--report", str(report),
                                      "--data-dir", str(tmp_path / "data"), "--bm25", "0.9", "0.4"])
    assert result.exit_code == 0, result.output
    assert "| mode | nDCG@10 | R@5 | R@10 | R@100 | RR@10 |" in result.output
    body = json.loads(report.read_text())
    assert (body["documents"], body["queries"]) == (3, 2)
    assert body["results"]["lexical (BM25, chunks)"]["nDCG@10"] == 1.0  # each query's document ranks first
    assert set(body["results"]) >= {"dense (max-passage)", "plain RRF of BM25 + dense",
                                    "lexical (BM25 k1=0.9 b=0.4, chunks)"}
    assert body["results"]["lexical (BM25 k1=0.9 b=0.4, chunks)"]["nDCG@10"] == 1.0
    # A second run reuses the ingested collection in --data-dir: no new generation is written.
    before = (tmp_path / "data" / "CURRENT").read_text()
    again = CliRunner().invoke(cli, ["eval", "retrieval", "--beir", str(beir), "--data-dir", str(tmp_path / "data")])
    assert again.exit_code == 0 and (tmp_path / "data" / "CURRENT").read_text() == before


def test_smart_layout_numbers_articles_by_position(tmp_path):
    time = tmp_path / "time"
    time.mkdir()
    (time / "TIME.ALL").write_text("".join(f"*TEXT {100 + i} 01/04/63 PAGE 020\n\n{x.upper()}\n\n"
                                           for i, (_, x) in enumerate(DOCS.values())) + "*STOP\n")
    (time / "TIME.QUE").write_text("*FIND 1\n\n APPLES HARVESTED IN DELL .\n\n*FIND 2\n\n BRIDGE REPAIRS .\n\n*STOP\n")
    (time / "TIME.REL").write_text("1 2\n\n2 3 9\n\n")  # 9 points past the last article and is dropped
    result = CliRunner().invoke(cli, ["eval", "retrieval", "--time", str(time)])
    assert result.exit_code == 0, result.output
    assert "time: 3 documents, 2 queries (document level)" in result.output


def test_time_articles_are_one_paragraph_whatever_their_double_spaced_lines(tmp_path):
    from service.evaluation.retrieval import load_time

    time = tmp_path / "time"
    time.mkdir()
    # As in TIME.ALL: hard-wrapped lines, each followed by a blank line, sentences running across them.
    (time / "TIME.ALL").write_text("*TEXT 017 01/04/63 PAGE 020\n\nTHE ALLIES AFTER NASSAU IN DECEMBER 1960, THE\n\n"
                                   "U.S . FIRST PROPOSED A FORCE . BUT EUROPE\n\nMADE NO PLAN .\n\n*STOP\n")
    (time / "TIME.QUE").write_text("*FIND 1\n\n NUCLEAR NATO .\n\n*STOP\n")
    (time / "TIME.REL").write_text("1 1\n\n")
    doc = load_time(time).documents[0]
    assert doc.text == ("the allies after nassau in december 1960, the u.s . first proposed a force . "
                        "but europe made no plan .")


def test_cranfield_layout_maps_queries_by_position_and_inverts_grades(tmp_path):
    cran = tmp_path / "cran"
    cran.mkdir()
    (cran / "cran.all.1400").write_text("".join(f".I {i}\n.T\n{t.lower()}\n.A\nsomeone\n.B\nj. 1958\n.W\n{x}\n"
                                                for i, (t, x) in enumerate(DOCS.values(), start=1)))
    # .I numbers skip (as in the real file); cranqrel numbers the queries 1, 2 by position.
    (cran / "cran.qry").write_text(".I 001\n.W\nsludge dumped into the\nestuary .\n.I 004\n.W\napples in dell .\n")
    (cran / "cranqrel").write_text("1 1 1\n1 3 4\n1 2 -1\n2 2 2\n")
    report = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["eval", "retrieval", "--cranfield", str(cran), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "cranfield: 3 documents, 2 queries (document level)" in result.output
    from pathlib import Path

    from service.evaluation.retrieval import load_cranfield

    collection = load_cranfield(Path(cran))
    assert collection.queries["1"] == "sludge dumped into the estuary ."
    assert collection.qrels == {"1": {"cran-0001": 4, "cran-0003": 1}, "2": {"cran-0002": 3}}  # -1: not relevant
    assert collection.documents[1].title == "apple harvest"
    lexical = json.loads(report.read_text())["results"]["lexical (BM25, chunks)"]
    assert lexical["RR@10"] == 1.0  # each query's best document ranks first
    assert lexical["R@10"] == 0.75  # the bridge article, judged of minimal interest to query 1, shares no word


def test_squad_layout_scores_chunks_holding_the_answer(tmp_path):
    squad = tmp_path / "qa.json"
    squad.write_text(json.dumps({"data": [{"title": "Dell", "paragraphs": [
        {"context": DOCS["d2"][1], "qas": [{"id": "a", "question": "How many tonnes of apples?",
                                            "answers": [{"text": "three hundred tonnes", "answer_start": 20}]}]},
        {"context": DOCS["d3"][1], "qas": [{"id": "b", "question": "When does the bridge close?",
                                            "answers": [{"text": "June", "answer_start": 22}]}]}]}]}))
    report = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["eval", "retrieval", "--squad", str(squad), "--report", str(report)])
    assert result.exit_code == 0, result.output
    body = json.loads(report.read_text())
    assert body["level"] == "chunk" and body["queries"] == 2
    assert body["results"]["lexical (BM25, chunks)"]["R@5"] == 1.0
    stories = CliRunner().invoke(cli, ["eval", "retrieval", "--squad", str(squad), "--level", "document",
                                       "--report", str(report)])
    assert stories.exit_code == 0, stories.output
    body = json.loads(report.read_text())
    assert body["level"] == "document" and body["results"]["dense (max-passage)"]["R@5"] == 1.0


def test_exactly_one_collection_is_required(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "retrieval"])
    assert result.exit_code == 2
    assert "give exactly one of --beir DIR, --time DIR, --cranfield DIR, --squad FILE" in result.output


@pytest.mark.parametrize("option", ["--time", "--cranfield"])
def test_a_directory_without_the_collection_files_is_refused_by_name(tmp_path, option):
    result = CliRunner().invoke(cli, ["eval", "retrieval", option, str(tmp_path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{tmp_path / ('TIME.ALL' if option == '--time' else 'cran.all.1400')} not found" in result.output


def test_a_damaged_judgment_file_is_refused_with_its_path(tmp_path):
    cran = tmp_path / "cran"
    cran.mkdir()
    (cran / "cran.all.1400").write_text(".I 1\n.T\nwing\n.W\na wing in a slipstream .\n")
    (cran / "cran.qry").write_text(".I 001\n.W\nwings .\n")
    (cran / "cranqrel").write_text("1 1 high\n")  # a grade that is not a number
    result = CliRunner().invoke(cli, ["eval", "retrieval", "--cranfield", str(cran)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot read the collection in {cran}: ValueError" in result.output


def test_beir_ids_in_angle_brackets_become_document_ids(tmp_path):
    from service.evaluation.retrieval import load_beir

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "<dbpedia:Oceanic_Airlines>", "title": "Oceanic Airlines",
                                                   "text": "Oceanic Airlines is a fictional airline."}))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "fictional airline"}))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t<dbpedia:Oceanic_Airlines>\t2\n")
    collection = load_beir(beir)  # DBpedia-entity's ids: '<' is not allowed to start a document id
    assert [d.id for d in collection.documents] == ["dbpedia:Oceanic_Airlines"]
    assert collection.qrels == {"q1": {"dbpedia:Oceanic_Airlines": 2}}
