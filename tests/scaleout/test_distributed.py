"""Distributed ingestion on a real Dask LocalCluster (2 worker processes on 127.0.0.1)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from index.local.store import Store
from index.models import DocumentIn
from index.pipeline.indexer import Indexer
from index.pipeline.ingest import iter_paths, load_path
from service.cli import cli
from tests.conftest import FIXTURE_ARTICLES, make_settings
from tests.scaleout.test_transfer import contents

pytest.importorskip("distributed")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOWNS = ["Vellmont", "Kelling", "Dell", "Marren", "Astor", "Brill"]


def articles() -> list[DocumentIn]:
    docs = [d for p in iter_paths([FIXTURE_ARTICLES]) for d in load_path(p)]
    for i, town in enumerate(TOWNS * 2):
        docs.append(DocumentIn(id=f"t{i}", title=f"{town} council meets", source="Test Wire",
                               text=f"The {town} council met on day {i}. It voted {i + 3} to 2 on the harbour "
                                    f"budget. Councillor Ann {town}son said the vote was close."))
    return docs


def test_two_workers_index_like_one_process_and_a_rerun_skips_what_is_stored(tmp_path, pg_dsn, embedder, nlp,
                                                                             prompts):
    from distributed import get_task_stream

    from index.pipeline.distributed import PipelineSpec, cluster_client, ingest
    from index.postgres.store import PgStore

    settings = make_settings(tmp_path)
    spec = PipelineSpec(embedding_model=settings.embedding_model, debris=prompts.debris)
    docs = articles()
    target = PgStore(pg_dsn, embedder.model_id, embedder.dimension)
    with cluster_client(None, 2) as client:
        with get_task_stream(client) as tasks:
            added = ingest(client, target, spec, docs, batch_size=3)
        assert len({t["worker"] for t in tasks.data}) == 2  # both workers took batches
        assert [a.id for a in added] == [d.id for d in docs] and not any(a.unchanged for a in added)
        docs[3] = docs[3].model_copy(update={"text": docs[3].text + " The mayor abstained."})
        again = ingest(client, target, spec, docs, batch_size=3)
    assert [a.id for a in again if not a.unchanged] == [docs[3].id]

    one = Store(tmp_path / "one", embedder.model_id, embedder.dimension)
    Indexer(one, embedder, nlp, prompts.debris).add(docs)
    mine, theirs = contents(one), contents(target)
    assert mine.keys() == theirs.keys()
    for doc_id, (doc, sentences, chunks, vectors) in mine.items():
        assert theirs[doc_id][:3] == (doc, sentences, chunks)
        cosine = (theirs[doc_id][3] * vectors).sum(axis=1)
        assert np.all(cosine > 0.9999)


def test_index_add_with_local_workers_from_the_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["index", "add", "--workers", "2", str(FIXTURE_ARTICLES), "--data-dir",
                                 str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "2 documents stored" in result.output
    again = runner.invoke(cli, ["index", "add", "--workers", "2", str(FIXTURE_ARTICLES), "--data-dir",
                                str(tmp_path / "data")])
    assert "(2 already stored unchanged, not embedded again)" in again.output
    refused = runner.invoke(cli, ["index", "add", "--workers", "2", "--all-or-none", str(FIXTURE_ARTICLES)])
    assert refused.exit_code == 2 and "--all-or-none" in refused.output
