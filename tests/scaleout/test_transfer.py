"""Export from one backend, import into the other: the same articles, offsets and vectors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from index.errors import InvalidInput, ModelMismatch
from index.local.store import Store
from index.postgres.store import PgStore
from index.transfer import export_archive, import_archive
from tests.index.test_pg_store import DIM, corpus

pytest.importorskip("psycopg")


def contents(store) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """Every article with its sentences, chunk offsets and vectors, by id."""
    snap = store.snapshot()
    out = {}
    by_doc: dict[str, list[int]] = {}
    for rowid, (doc_id, _, _) in sorted(snap.chunk_spans().items()):
        by_doc.setdefault(doc_id, []).append(rowid)
    for listed in snap.documents(limit=1000):
        doc = snap.document(listed.id)
        rowids = by_doc[doc.id]
        chunks = [(p.chunk_id, p.start, p.end) for _, p in snap.passages([(r, 0.0) for r in rowids])]
        out[doc.id] = (doc, [(s.start, s.end) for s in snap.sentences(doc.id)], chunks, snap.vectors(rowids))
    return out


def assert_same(a: dict[str, tuple], b: dict[str, tuple]) -> None:
    assert a.keys() == b.keys()
    for doc_id, (doc, sentences, chunks, vectors) in a.items():
        other = b[doc_id]
        assert other[0] == doc and other[1] == sentences and other[2] == chunks
        np.testing.assert_allclose(other[3], vectors, atol=1e-6)


def test_faiss_to_postgres_and_back(tmp_path, pg_dsn):
    source = Store(tmp_path / "src", "m", DIM)
    source.write(upserts=corpus(25))
    source.write(deletes=["a7"])
    exported = io.StringIO()
    assert export_archive(source, exported) == 24
    header = json.loads(exported.getvalue().splitlines()[0])
    assert header == {"format": "newsroom-qa-export", "version": 1, "model_id": "m", "dimension": DIM,
                      "documents": 24}

    pg = PgStore(pg_dsn, "m", DIM)
    assert import_archive(pg, io.StringIO(exported.getvalue()), batch_size=10) == 24
    assert_same(contents(source), contents(pg))
    snap_f, snap_p = source.snapshot(), pg.snapshot()
    hits_f = snap_f.lexical_query("ferry strike").search(5)
    hits_p = snap_p.lexical_query("ferry strike").search(5)
    ratio = hits_p[0][1] / hits_f[0][1]  # bm25s scales BM25 by a constant factor
    by_score = {round(s * ratio, 4): set() for _, s in hits_f}
    for (_, p), (_, s) in zip(snap_f.passages(hits_f), hits_f, strict=True):
        by_score[round(s * ratio, 4)].add(p.chunk_id)
    for (_, p), (_, s) in zip(snap_p.passages(hits_p), hits_p, strict=True):
        assert p.chunk_id in by_score.get(round(s, 4), set()) or s <= min(by_score) + 1e-4  # ties may swap

    again = io.StringIO()
    export_archive(pg, again)
    back = Store(tmp_path / "back", "m", DIM)
    import_archive(back, io.StringIO(again.getvalue()))
    assert_same(contents(source), contents(back))


def test_damaged_exports_are_refused_with_the_line(tmp_path):
    source = Store(tmp_path / "src", "m", DIM)
    source.write(upserts=corpus(3))
    text = io.StringIO()
    export_archive(source, text)
    lines = text.getvalue().splitlines()
    target = Store(tmp_path / "dst", "m", DIM)
    with pytest.raises(InvalidInput, match="line 1 is not a newsroom-qa export header"):
        import_archive(target, io.StringIO("\n".join(lines[1:])))
    with pytest.raises(ModelMismatch, match="vectors of 'm'"):
        import_archive(Store(tmp_path / "other", "other-model", DIM), io.StringIO(text.getvalue()))
    broken = json.loads(lines[2])
    broken["vectors"] = broken["vectors"][:-8]
    with pytest.raises(InvalidInput, match="line 3: "):
        import_archive(target, io.StringIO("\n".join([lines[0], lines[1], json.dumps(broken)])), batch_size=1)
    assert target.snapshot().has_document("a0")  # the batch before the damaged line was stored
    assert not target.snapshot().has_document("a1")
    outside = json.loads(lines[2])
    outside["chunks"] = [[s, 10_000] for s, _ in outside["chunks"]]
    with pytest.raises(InvalidInput, match="line 2: offsets"):
        import_archive(target, io.StringIO("\n".join([lines[0], json.dumps(outside)])))
