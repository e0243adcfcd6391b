"""Nothing lost: ``index init`` again on a data dir holding the seeds changes nothing, and a seed-like page added
beside them is answered from (through the command line, as a user runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.conftest import SEEDS_DIR

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not list(SEEDS_DIR.glob("00[04]_*.txt")), reason="the seeds are not in seeds/")]
SCRAPED_PAGE = Path(__file__).resolve().parent / "fixtures" / "scraped" / "001_kellmoor-dam.txt"


def _files(data_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in data_dir.rglob("*") if p.is_file()}


def test_init_twice_changes_nothing_and_a_new_page_joins_the_seeds(monkeypatch, tmp_path):
    data = tmp_path / "data"
    monkeypatch.setenv("NEWSROOM_QA_SEEDS_DIR", str(SEEDS_DIR))
    monkeypatch.setenv("NEWSROOM_QA_DATA_DIR", str(data))
    monkeypatch.setenv("NEWSROOM_QA_SERVER_URL", "off")
    runner = CliRunner()

    first = runner.invoke(cli, ["index", "init"])
    assert first.exit_code == 0, first.output
    assert "seeds: 2 indexed, 0 already stored unchanged; 2 documents" in first.output
    before = _files(data)

    again = runner.invoke(cli, ["index", "init"])
    assert again.exit_code == 0, again.output
    assert "seeds: 0 indexed, 2 already stored unchanged; 2 documents" in again.output
    assert _files(data) == before  # not one file of the archive rewritten

    added = runner.invoke(cli, ["index", "add", str(SCRAPED_PAGE)])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["index", "list"])
    assert listed.exit_code == 0 and all(i in listed.output for i in ("000_4c1dc10ddaa23a42", "004_e6db4c06afe94378",
                                                                        "001_kellmoor-dam")), listed.output
    answer = runner.invoke(cli, ["ask", "Who is the mayor of Kellmoor?"])
    assert answer.exit_code == 0 and answer.output.splitlines()[0] == "Oskar Brandt", answer.output
    seeds = runner.invoke(cli, ["ask", "--json", "Who doubted the crematorium claim?"])
    assert seeds.exit_code == 0, seeds.output
    assert '"doc_id": "004_e6db4c06afe94378"' in seeds.output.replace('":"', '": "')
