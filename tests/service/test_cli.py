"""The command line, run through click's CliRunner: exit codes and exact output."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.conftest import FIXTURE_ARTICLES, free_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSROOM_QA_SEEDS_DIR", str(FIXTURE_ARTICLES))
    monkeypatch.setenv("NEWSROOM_QA_DATA_DIR", str(tmp_path / "data"))
    # In-process unless a test names a service: a `newsroom-qa serve` on this machine's 127.0.0.1:8000 must not answer.
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", "off")
    return tmp_path


def test_ask_in_process_seeds_an_empty_data_dir_and_cites(env):
    result = CliRunner().invoke(cli, ["ask", "Who is the mayor of Vellmont?"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Peter Amsel"
    assert lines[1] == '  "Peter Amsel is the mayor of Vellmont."'
    assert lines[2] == "Sources:"
    assert lines[3] == ("  [1] Marren Daily (fictional), 2024-03-13: "
                        "Environmental groups question harbour dumping claim")


def test_ask_against_a_running_server(live):
    result = CliRunner().invoke(cli, ["ask", "--server", live.url, "Who doubted the pipeline claim?"])
    assert result.exit_code == 0, result.output
    assert any(name in result.output.splitlines()[0] for name in ("Marren Water Trust", "Lindqvist"))
    assert "[1] Marren Daily (fictional), 2024-03-13" in result.output


def test_ask_json_is_the_raw_response(live):
    result = CliRunner().invoke(cli, ["ask", "--json", "--server", live.url, "What is the capital of France?"])
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["abstained"] is True and body["answer"] is None and body["passages"]


def test_abstention_prints_nearest_passages(live):
    result = CliRunner().invoke(cli, ["ask", "--server", live.url, "What is the capital of France?"])
    assert result.output.startswith("Not in the archive: none of the stored articles answers this question.\n"
                                    "Nearest passages:\n  [1] ")


def test_empty_question_is_an_error_not_a_traceback(live):
    result = CliRunner().invoke(cli, ["ask", "--server", live.url, "  "])
    assert result.exit_code == 1
    assert result.output.startswith("Error: The question is empty")
    assert "Traceback" not in result.output


def test_unreachable_server_is_one_line(env):
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["ask", "--server", url, "Who?"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot reach {url}/v1/ask: ConnectError")


def test_ask_uses_the_service_at_the_configured_url_by_default(env, live, monkeypatch):
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", live.url)
    result = CliRunner().invoke(cli, ["ask", "Who doubted the pipeline claim?"])
    assert result.exit_code == 0, result.output
    assert any(name in result.stdout.splitlines()[0] for name in ("Marren Water Trust", "Lindqvist"))
    assert result.stderr == ""  # no note: the service answered
    assert not (env / "data").exists()  # nothing was loaded or seeded in this process


def test_search_uses_the_service_at_the_configured_url_too(env, live, monkeypatch):
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", live.url + "/")
    result = CliRunner().invoke(cli, ["search", "--json", "harbour dumping"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"] and not (env / "data").exists()


def test_ask_with_no_service_listening_answers_in_process_after_one_note(env, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", url)
    result = CliRunner().invoke(cli, ["ask", "Who is the mayor of Vellmont?"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Peter Amsel"
    assert result.stderr.splitlines() == [f"note: no newsroom-qa service at {url}; answering in-process (slower: "
                                          "loads the models; start one with 'newsroom-qa serve')"]


def test_something_else_at_the_configured_url_is_not_taken_for_the_service(env, monkeypatch):
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", url)
    monkeypatch.chdir(env)  # the handler serves this directory: no /healthz in it
    try:
        result = CliRunner().invoke(cli, ["ask", "Who is the mayor of Vellmont?"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Peter Amsel"
    assert result.stderr.startswith(f"note: {url} answered, but not as a newsroom-qa service (HTTP 404 on /healthz)")


def test_explicit_server_that_is_down_is_an_error_not_a_fallback(env):
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["ask", "--server", url, "Who is the mayor of Vellmont?"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot reach {url}/v1/ask: ConnectError")
    assert "note:" not in result.output and "Traceback" not in result.output and result.stdout == ""
    assert not (env / "data").exists()


@pytest.mark.parametrize("how", [["--in-process"], ["--server", ""], ["--server", "none"], ["--data-dir", "DATA"]])
def test_in_process_on_request_or_for_a_named_data_dir_even_with_a_service_up(env, live, monkeypatch, how):
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", live.url)
    how = [str(env / "data") if arg == "DATA" else arg for arg in how]
    result = CliRunner().invoke(cli, ["ask", *how, "Who is the mayor of Vellmont?"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Peter Amsel" and result.stderr == ""
    assert (env / "data").is_dir()  # answered from the local data dir (seeded now), not by the service


def test_server_with_a_data_dir_or_in_process_is_a_usage_error(env, live):
    both = CliRunner().invoke(cli, ["ask", "--server", live.url, "--data-dir", str(env / "x"), "Who?"])
    assert both.exit_code == 2 and "--server answers from the archive that service was started on" in both.output
    flags = CliRunner().invoke(cli, ["ask", "--server", live.url, "--in-process", "Who?"])
    assert flags.exit_code == 2 and "--server and --in-process exclude each other" in flags.output


def test_index_add_list_remove(env, tmp_path):
    story = tmp_path / "river.txt"
    story.write_text("River report\n\nThe river rose two metres overnight.", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["index", "add", str(story)])
    assert result.exit_code == 0, result.output
    assert "added river: 1 chunks  River report" in result.output
    listed = runner.invoke(cli, ["index", "list"]).output
    assert listed.splitlines()[0].startswith("river\t-\t-\t1\tRiver report")
    result = runner.invoke(cli, ["index", "remove", "river"])
    assert result.exit_code == 0 and "removed 1 documents" in result.output
    result = runner.invoke(cli, ["index", "remove", "river"])
    assert result.exit_code == 1 and "Error: no document with id 'river'" in result.output
    runner.invoke(cli, ["index", "add", str(story)])
    story.write_text("River report\n\nThe river fell again by noon.", encoding="utf-8")
    runner.invoke(cli, ["index", "add", str(story)])  # replaced: a tombstone in the older segment
    result = runner.invoke(cli, ["index", "optimize"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^\d+ segments \(\d+ deleted articles\) -> 1 in [\d.]+ s; \d+ documents", result.output)


def test_index_add_bad_file_is_refused(env, tmp_path):
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF")
    result = CliRunner().invoke(cli, ["index", "add", str(bad)])
    assert result.exit_code == 1
    assert "unsupported file type '.pdf'" in result.output


def test_ask_filters_reach_the_server(live):
    result = CliRunner().invoke(cli, ["ask", "--json", "--server", live.url,
                                      "--source", "The Valley Courier (fictional)", "--until", "2024-03-12",
                                      "Who doubted the pipeline claim?"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["passages"] and {p["doc_id"] for p in body["passages"]} == {"001_harbour-report"}


def test_ask_bad_date_is_a_usage_error(live):
    result = CliRunner().invoke(cli, ["ask", "--server", live.url, "--since", "last week", "Who?"])
    assert result.exit_code == 2 and "'last week' does not match the format '%Y-%m-%d'" in result.output


def test_empty_archive_is_named_as_such(tmp_path, settings_for, embedder, nlp, prompts):
    from tests.conftest import LiveServer, build_service

    empty = build_service(settings_for(tmp_path, seeds_dir=tmp_path / "no-seeds"), embedder, nlp, prompts)
    with LiveServer(empty) as server:
        result = CliRunner().invoke(cli, ["ask", "--server", server.url, "Who?"])
    assert result.exit_code == 0
    assert result.output == "The archive is empty: add articles with 'newsroom-qa index add PATH'.\n"


def test_search_in_process_explains_each_signal_and_quotes_offsets(env):
    result = CliRunner().invoke(cli, ["search", "--json", "--explain", "--top-k", "3", "harbour dumping doubts"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)["results"]
    assert len(results) == 3
    assert [r["scores"]["fused"] for r in results] == sorted((r["scores"]["fused"] for r in results), reverse=True)
    assert all(0 <= r["scores"]["lexical"] <= 1 and r["scores"]["recency"] is None for r in results)
    text = CliRunner().invoke(cli, ["search", "--explain", "--top-k", "3", "harbour dumping doubts"]).output
    lines = text.splitlines()
    assert lines[0] == "Passages:"
    first = results[0]
    assert lines[1].endswith(f"({first['doc_id']}, characters {first['start']}-{first['end']})")
    signals = first["scores"]
    assert lines[3] == (f"      scores: dense {signals['dense']:.3f}, lexical {signals['lexical']:.3f}, "
                        f"fused {signals['fused']:.3f}")
    assert sum(line.startswith("      scores: ") for line in lines) == 3


def test_search_filters_and_recency_reach_the_server(live):
    result = CliRunner().invoke(cli, ["search", "--json", "--explain", "--server", live.url, "--source",
                                      "The Valley Courier (fictional)", "--recency-half-life", "365",
                                      "--recency-weight", "0.5", "harbour dumping"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)["results"]
    assert results and {r["source"] for r in results} == {"The Valley Courier (fictional)"}
    assert all(0 <= r["scores"]["recency"] < 1 for r in results)  # the articles are from 2024
    none = CliRunner().invoke(cli, ["search", "--server", live.url, "--doc", "no-such-doc", "harbour"])
    assert none.exit_code == 0 and none.output.startswith("No stored passage matches")


def test_search_bad_input_is_one_line(live):
    empty = CliRunner().invoke(cli, ["search", "--server", live.url, "  "])
    assert empty.exit_code == 1 and "The query is empty." in empty.output and "Traceback" not in empty.output
    bad = CliRunner().invoke(cli, ["search", "--server", live.url, "--recency-half-life", "0", "harbour"])
    assert bad.exit_code == 2 and "0.0 is not in the range x>0" in bad.output
    weight = CliRunner().invoke(cli, ["ask", "--server", live.url, "--recency-half-life", "30", "--recency-weight",
                                      "1.5", "Who?"])
    assert weight.exit_code == 2 and "1.5 is not in the range 0<=x<=1" in weight.output
    alone = CliRunner().invoke(cli, ["search", "--server", live.url, "--recency-weight", "0.5", "harbour"])
    assert alone.exit_code == 2 and "--recency-weight needs --recency-half-life" in alone.output


def test_search_names_the_other_outlets_of_a_near_duplicate():
    from index.models import Passage, SignalScores, SourceRef
    from service.prompts import load_prompts
    from service.render import render_passages
    from service.settings import Settings

    wire = Passage(doc_id="courier-1", title="Dam opens", source="Valley Courier", chunk_id="courier-1#0",
                   text="The Kessel dam opened on Monday.", start=0, end=32, score=0.9,
                   also_in=[SourceRef(doc_id="daily-7", title="Dam opens", source="Marren Daily")],
                   scores=SignalScores(dense=0.61, lexical=1.0, fused=0.9, recency=0.5))
    lines = render_passages([wire], load_prompts(Settings().prompts_dir).templates.cli).splitlines()
    assert lines[1] == "  [1] Valley Courier, undated: Dam opens (courier-1, characters 0-32)"
    assert lines[3] == "      also in: Marren Daily, undated (daily-7)"
    assert lines[4] == ("      scores: dense 0.610, lexical 1.000, fused 0.900, recency 0.500 (1 = today, 0.5 = one "
                        "half-life old)")


def test_ask_recency_reaches_the_server(live):
    result = CliRunner().invoke(cli, ["ask", "--json", "--server", live.url, "--recency-half-life", "30",
                                      "--recency-weight", "1", "Who doubted the pipeline claim?"])
    assert result.exit_code == 0, result.output
    plain = CliRunner().invoke(cli, ["ask", "--json", "--server", live.url, "Who doubted the pipeline claim?"])
    scored, unscored = (max(p["score"] for p in json.loads(r.output)["passages"]) for r in (result, plain))
    assert 0 <= scored < 0.01 * unscored  # 2024 articles, a 30-day half-life, recency counting fully
