"""The postgres backend against a real PostgreSQL with pgvector: the same answers as the data-directory backend."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from index.errors import DataDirError, DocumentNotFound, ModelMismatch
from index.local.store import DocumentWrite, Store
from index.models import Chunk, Document, Filters, Sentence
from index.postgres.store import PgStore
from index.tokens import tokenize

pytest.importorskip("psycopg")

DIM = 8
WORDS = ["harbour", "council", "budget", "dredging", "contract", "ferry", "strike", "minister", "prison", "report",
         "witness", "court", "appeal", "election", "turnout", "mayor", "river", "flood", "bridge", "tender", "audit",
         "police", "union", "teacher", "hospital"]


def _counts(text: str) -> dict[str, int]:
    """How often each token of ``text`` occurs: the frequencies BM25 must hold, counted independently of the store."""
    return dict(Counter(tokenize(text)))


def article(n: int, rng: np.random.Generator, source: str = "Wire", published: date | None = None,
            text: str | None = None) -> DocumentWrite:
    """A document of 2-3 chunks of random words (one sentence per chunk), with random unit vectors."""
    if text is None:
        parts = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 15)))) + "."
                 for _ in range(int(rng.integers(2, 4)))]
        text = " ".join(parts)
    else:
        parts = [text]
    sentences, chunks, pos = [], [], 0
    for seq, part in enumerate(parts):
        sentences.append(Sentence(start=pos, end=pos + len(part)))
        chunks.append(Chunk(chunk_id=f"a{n}#{seq}", doc_id=f"a{n}", seq=seq, start=pos, end=pos + len(part),
                            text=part))
        pos += len(part) + 1
    vectors = rng.normal(size=(len(chunks), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    doc = Document(id=f"a{n}", title=f"Story {n}", text=text, source=source, published=published,
                   n_chunks=len(chunks))
    return DocumentWrite(document=doc, sentences=sentences, chunks=chunks, vectors=vectors)


def corpus(n: int = 40, seed: int = 0) -> list[DocumentWrite]:
    rng = np.random.default_rng(seed)
    return [article(i, rng, source="Wire" if i % 2 else "Daily", published=date(2024, 1, 1 + i % 28))
            for i in range(n)]


def by_chunk(snap, hits: list[tuple[int, float]]) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    return [(p.chunk_id, s) for (_, s), (_, p) in zip(hits, snap.passages(hits), strict=True)]


@pytest.fixture()
def both(pg_dsn: str, tmp_path: Path) -> tuple[Store, PgStore]:
    """The same corpus written to a data directory and to PostgreSQL."""
    writes = corpus()
    faiss_store, pg_store = Store(tmp_path / "data", "m", DIM), PgStore(pg_dsn, "m", DIM)
    faiss_store.write(upserts=writes)
    pg_store.write(upserts=writes)
    return faiss_store, pg_store


@pytest.mark.parametrize("doc_weight", [0.0, 0.6])
def test_bm25_in_sql_ranks_and_scores_as_bm25s(both, doc_weight: float):
    faiss_store, pg_store = both
    f_snap, p_snap = faiss_store.snapshot(), pg_store.snapshot()
    for query in ("harbour dredging contract", "prison witness appeal", "flood bridge", "the mayor's audit"):
        f_hits = by_chunk(f_snap, f_snap.lexical_query(query, doc_weight=doc_weight).search(10))
        p_hits = by_chunk(p_snap, p_snap.lexical_query(query, doc_weight=doc_weight).search(10))
        assert len(p_hits) == len(f_hits) == 10
        f_scores = np.array([s for _, s in f_hits]) / f_hits[0][1]
        p_scores = np.array([s for _, s in p_hits]) / p_hits[0][1]
        np.testing.assert_allclose(p_scores, f_scores, rtol=1e-4)  # same BM25, up to bm25s's (k1 + 1) factor
        # Equal scores may come in either order (and tie at the cut); above the last score the chunks must agree.
        cut = f_scores[-1] + 1e-4
        assert {c for c, s in zip([c for c, _ in p_hits], p_scores, strict=True) if s > cut} == \
            {c for c, s in zip([c for c, _ in f_hits], f_scores, strict=True) if s > cut}


def test_dense_search_finds_the_exact_nearest_chunks(both):
    _, pg_store = both
    snap = pg_store.snapshot()
    writes = corpus()
    vectors = np.concatenate([w.vectors for w in writes])
    ids = [c.chunk_id for w in writes for c in w.chunks]
    for q in np.random.default_rng(7).normal(size=(5, DIM)).astype(np.float32):
        q /= np.linalg.norm(q)
        found = by_chunk(snap, snap.dense_search(q, 10))
        exact = np.argsort(-(vectors @ q))[:10]
        assert [c for c, _ in found] == [ids[i] for i in exact]
        np.testing.assert_allclose([s for _, s in found], (vectors @ q)[exact], rtol=1e-5)


def test_frequencies_stay_exact_through_replaces_and_deletes(pg_dsn: str, tmp_path: Path):
    store = PgStore(pg_dsn, "m", DIM)
    writes = corpus(30)
    store.write(upserts=writes[:20])
    store.write(upserts=writes[20:], deletes=["a3", "a4"])
    rng = np.random.default_rng(99)
    replaced = [article(i, rng) for i in (5, 6, 21)]  # same ids, new words
    store.write(upserts=replaced)
    store.write(deletes=["a22"])
    final = {w.document.id: w for w in writes if w.document.id not in {"a3", "a4", "a22"}}
    final.update({w.document.id: w for w in replaced})
    chunk_df: dict[str, int] = {}
    doc_df: dict[str, int] = {}
    for w in final.values():
        for c in w.chunks:
            for t in _counts(f"{w.document.title}. {c.text}"):
                chunk_df[t] = chunk_df.get(t, 0) + 1
        for t in _counts(f"{w.document.title}. {w.document.text}"):
            doc_df[t] = doc_df.get(t, 0) + 1
    stored = store.read(lambda cur: cur.execute("SELECT collection, lexeme, df FROM lexemes").fetchall())
    assert {t: df for c, t, df in stored if c == "c"} == chunk_df
    assert {t: df for c, t, df in stored if c == "d"} == doc_df
    snap = store.snapshot()
    assert (snap.manifest.n_documents, snap.manifest.n_chunks) == (len(final), sum(len(w.chunks)
                                                                                   for w in final.values()))
    # And the same ranking as a data directory built from the final documents only.
    fresh = Store(tmp_path / "fresh", "m", DIM)
    fresh.write(upserts=list(final.values()))
    f_snap = fresh.snapshot()
    for query in ("strike minister", "hospital teacher union"):
        f_hits = by_chunk(f_snap, f_snap.lexical_query(query).search(5))
        p_hits = by_chunk(snap, snap.lexical_query(query).search(5))
        np.testing.assert_allclose([s for _, s in p_hits], np.array([s for _, s in f_hits]) * p_hits[0][1]
                                   / f_hits[0][1], rtol=1e-4)


def test_filters_restrict_both_signals(both):
    _, pg_store = both
    snap = pg_store.snapshot()
    q = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    for filters, keep in [
        (Filters(sources=["Wire"]), lambda w: w.document.source == "Wire"),
        (Filters(doc_ids=["a1", "a2"]), lambda w: w.document.id in {"a1", "a2"}),
        (Filters(published_from=date(2024, 1, 10), published_to=date(2024, 1, 12)),
         lambda w: date(2024, 1, 10) <= w.document.published <= date(2024, 1, 12)),
    ]:
        allowed_docs = {w.document.id for w in corpus() if keep(w)}
        allowed = snap.allowed_rowids(filters)
        dense = snap.passages(snap.dense_search(q, 50, allowed))
        lexical = snap.passages(snap.lexical_query("harbour council budget", doc_weight=0.6).search(50, allowed))
        assert dense and lexical
        assert {p.doc_id for _, p in dense} <= allowed_docs and {p.doc_id for _, p in lexical} <= allowed_docs
        n_allowed_chunks = sum(len(w.chunks) for w in corpus() if keep(w))
        assert len(dense) == min(50, n_allowed_chunks)  # the filtered HNSW scan keeps going until it has enough


def test_spelling_variants_find_the_other_transliteration(pg_dsn: str):
    store = PgStore(pg_dsn, "m", DIM)
    rng = np.random.default_rng(1)
    writes = [*corpus(150), article(500, rng, text="Former detainees described Saydnaya prison near Damascus.")]
    store.write(upserts=writes)
    snap = store.snapshot()
    hits = snap.passages(snap.lexical_query("What happened at Sednaya?").search(3))
    assert hits and hits[0][1].doc_id == "a500"


def test_a_write_is_visible_to_another_process_store_at_once(pg_dsn: str):
    writer, reader = PgStore(pg_dsn, "m", DIM), PgStore(pg_dsn, "m", DIM)
    assert not reader.snapshot().has_document("a0")
    writer.write(upserts=corpus(3))
    snap = reader.snapshot()
    assert snap.has_document("a0") and snap.document("a1").title == "Story 1"
    assert [s.start for s in snap.sentences("a2")] == [s.start for s in corpus(3)[2].sentences]
    assert [d.id for d in snap.documents(limit=2, offset=1)] == ["a1", "a2"]


def test_deleting_a_missing_document_changes_nothing(pg_dsn: str):
    store = PgStore(pg_dsn, "m", DIM)
    store.write(upserts=corpus(3))
    before = store.snapshot().manifest
    with pytest.raises(DocumentNotFound, match="nope"):
        store.write(upserts=corpus(5)[3:], deletes=["a0", "nope"])
    after = store.snapshot().manifest
    assert (after.n_documents, after.n_chunks, after.generation) == (before.n_documents, before.n_chunks,
                                                                      before.generation)
    assert store.snapshot().has_document("a0") and not store.snapshot().has_document("a3")


def test_another_model_is_refused_and_a_dead_server_is_a_clear_error(pg_dsn: str, pg_server):  # type: ignore[no-untyped-def]
    PgStore(pg_dsn, "m", DIM).write(upserts=corpus(1))
    with pytest.raises(ModelMismatch, match="built with embedding model 'm'"):
        PgStore(pg_dsn, "other-model", DIM)
    with pytest.raises(DataDirError, match="cannot prepare the PostgreSQL database"):
        PgStore(f"postgresql://postgres@127.0.0.1:{pg_server.port + 1}/x", "m", DIM, retries=1)


def _write_at_revision_0001(dsn: str, writes: list[DocumentWrite]) -> None:
    """What the store of revision 0001 wrote: rows with tsvectors (counts as positions), frequencies and totals."""
    import psycopg
    from pgvector.psycopg import register_vector

    def tsv(counts: dict[str, int]) -> str:
        return " ".join("'" + t.replace("'", "''") + "':" + ",".join(str(i) for i in range(1, min(c, 255) + 1))
                        for t, c in counts.items())

    df: dict[tuple[str, str], int] = {}
    sizes = {"c": [0, 0], "d": [0, 0]}
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        for w in writes:
            d = w.document
            doc_counts = _counts(f"{d.title}. {d.text}")
            conn.execute("INSERT INTO documents (id, title, text, source, published, url, n_chunks, tsv, n_terms, "
                         "centroid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s, %s)",
                         (d.id, d.title, d.text, d.source, d.published, d.url, len(w.chunks), tsv(doc_counts),
                          sum(doc_counts.values()), w.vectors.mean(axis=0)))
            for (collection, counts) in [("d", doc_counts)] + [
                    ("c", _counts(f"{d.title}. {d.text[c.start:c.end]}")) for c in w.chunks]:
                for t in counts:
                    df[collection, t] = df.get((collection, t), 0) + 1
                sizes[collection][0] += 1
                sizes[collection][1] += sum(counts.values())
            for chunk, vector in zip(w.chunks, w.vectors, strict=True):
                counts = _counts(f"{d.title}. {d.text[chunk.start:chunk.end]}")
                conn.execute("INSERT INTO chunks (chunk_id, doc_id, seq, start_at, end_at, embedding, tsv, n_terms) "
                             "VALUES (%s, %s, %s, %s, %s, %s, %s::tsvector, %s)",
                             (chunk.chunk_id, d.id, chunk.seq, chunk.start, chunk.end, vector, tsv(counts),
                              sum(counts.values())))
        for (collection, t), n in df.items():
            conn.execute("INSERT INTO lexemes VALUES (%s, %s, %s)", (collection, t, n))
        for collection, (n, terms) in sizes.items():
            conn.execute("UPDATE totals SET n = %s, terms = %s WHERE collection = %s", (n, terms, collection))
        conn.execute("INSERT INTO meta VALUES ('generation', '1')")


def test_migrating_an_older_schema_keeps_bm25_as_it_was(pg_dsn: str, pg_server):  # type: ignore[no-untyped-def]
    """A database written at revision 0001 (tsvectors, no postings) is migrated to the head on the next start:
    0002 fills the postings from the tsvectors, 0003 orders them by impact and drops the tsvectors, 0004 keys them
    by word ids and article numbers; BM25 then ranks and scores as a database written by today's store."""
    from index.postgres.schema import SCHEMA_HEAD, migrate

    writes = corpus(20)
    migrate(pg_dsn, "m", DIM, revision="0001")
    _write_at_revision_0001(pg_dsn, writes)
    old = PgStore(pg_dsn, "m", DIM)
    assert old.read(lambda cur: cur.execute("SELECT version_num FROM newsroom_qa_schema_version").fetchone()) == \
        (SCHEMA_HEAD,)
    fresh = PgStore(pg_server.create_database(f"fresh_{id(writes)}"), "m", DIM)
    fresh.write(upserts=writes)
    for query in ("harbour strike", "prison witness appeal"):
        for doc_weight in (0.0, 0.6):
            after = by_chunk(old.snapshot(), old.snapshot().lexical_query(query, doc_weight=doc_weight).search(8))
            today = by_chunk(fresh.snapshot(), fresh.snapshot().lexical_query(query, doc_weight=doc_weight)
                             .search(8))
            assert [c for c, _ in after] == [c for c, _ in today]
            np.testing.assert_allclose([s for _, s in after], [s for _, s in today], rtol=1e-6)


def test_a_lost_database_is_a_clear_error_and_the_service_says_503(tmp_path, embedder, nlp, prompts):
    """The server goes away under a running service: reads fail with a DataDirError (HTTP 503), not a traceback."""
    import shutil
    import tempfile

    import httpx

    from index.postgres.local_server import LocalPostgres
    from tests.conftest import LiveServer, build_service, make_settings

    root = Path(tempfile.mkdtemp(prefix="newsroom-qa-lost-"))
    server = LocalPostgres.start(root)
    try:
        settings = make_settings(tmp_path, backend="postgres", database_url=server.create_database("lost"))
        service = build_service(settings, embedder, nlp, prompts)
        with LiveServer(service) as live, httpx.Client(base_url=live.url, timeout=60) as client:
            assert client.get("/readyz").status_code == 200
            server.stop()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "PostgreSQL is unavailable" in ready.json()["detail"]
            asked = client.post("/v1/ask", json={"question": "Who is the mayor of Vellmont?"})
            assert asked.status_code == 503 and "PostgreSQL is unavailable" in asked.json()["detail"]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _index_definitions(store: PgStore) -> set[str]:
    """Every index and every constraint (primary and foreign keys among them) of the schema."""
    return {d for (d,) in store.read(lambda cur: cur.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' UNION ALL "
        "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace").fetchall())}


def test_a_bulk_load_builds_the_indexes_after_it_and_ranks_as_row_by_row_writes(pg_dsn: str, pg_server,  # type: ignore[no-untyped-def]
                                                                                 monkeypatch):
    """One write of more chunks than the bulk threshold drops the big indexes, COPYs, and builds them again: the
    same index definitions (HNSW with the chosen parameters), the same frequencies and the same rankings as the
    archive written in small batches that keep every index up to date. Into an empty archive the rows go in
    frozen: most pages are all-visible before the VACUUM after the load, every page after it."""
    import psycopg

    from index.postgres.rows import BULK_MIN_CHUNKS

    writes = corpus(2600, seed=5)
    assert sum(len(w.chunks) for w in writes) >= BULK_MIN_CHUNKS
    small = PgStore(pg_server.create_database(f"small_{id(writes)}"), "m", DIM)
    for first in range(0, len(writes), 500):
        small.write(upserts=writes[first:first + 500])
    bulk = PgStore(pg_dsn, "m", DIM)
    before = _index_definitions(bulk)

    tables = ("chunks", "chunk_terms", "doc_terms", "documents", "sentences")

    def visible() -> list[float]:
        """Each table's share of pages marked all-visible, as counted now (ANALYZE reads the visibility map)."""
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"ANALYZE {', '.join(tables)}")
            return [v / n for n, v in conn.execute("SELECT relpages, relallvisible FROM pg_class WHERE relname = "
                                                   "ANY(%s)", (list(tables),)).fetchall()]

    vacuum = bulk._vacuum
    before_vacuum: list[float] = []
    monkeypatch.setattr(bulk, "_vacuum", lambda *names: (before_vacuum.extend(visible()), vacuum(*names)))
    bulk.write(upserts=writes)
    assert _index_definitions(bulk) == before == _index_definitions(small)
    assert len(before_vacuum) == 5 and min(before_vacuum) > 0.5, before_vacuum  # written frozen (no FREEZE: 0)
    assert visible() == [1.0] * 5
    assert any("FOREIGN KEY" in d for d in before)  # the keys dropped for the load are back, and hold:
    bulk.write(deletes=[writes[0].document.id])
    orphans = ("SELECT (SELECT count(*) FROM sentences WHERE doc_id = %(d)s) + "
               "(SELECT count(*) FROM chunks WHERE doc_id = %(d)s)")
    assert bulk.read(lambda cur: cur.execute(orphans, {"d": writes[0].document.id}).fetchone())[0] == 0
    small.write(deletes=[writes[0].document.id])
    frequencies = "SELECT collection, lexeme, df FROM lexemes ORDER BY 1, 2"
    assert bulk.read(lambda cur: cur.execute(frequencies).fetchall()) == \
        small.read(lambda cur: cur.execute(frequencies).fetchall())
    for query in ("harbour dredging contract", "prison witness appeal"):
        hits = [by_chunk(s.snapshot(), s.snapshot().lexical_query(query, doc_weight=0.6).search(10))
                for s in (bulk, small)]
        np.testing.assert_allclose([s for _, s in hits[0]], [s for _, s in hits[1]], rtol=1e-5)
        cut = hits[0][-1][1] * (1 + 1e-5)  # equal scores may come in either order (and tie at the cut)
        assert {c for c, s in hits[0] if s > cut} == {c for c, s in hits[1] if s > cut}
    vectors = np.concatenate([w.vectors for w in writes])
    ids = [c.chunk_id for w in writes for c in w.chunks]
    for q in np.random.default_rng(11).normal(size=(3, DIM)).astype(np.float32):
        exact = {ids[i] for i in np.argsort(-(vectors @ (q / np.linalg.norm(q))))[:10]}
        found = {c for c, _ in by_chunk(bulk.snapshot(), bulk.snapshot().dense_search(q / np.linalg.norm(q), 10))}
        assert len(found & exact) >= 9  # the graph built after the load finds the nearest chunks


def test_a_bulk_load_that_fails_leaves_the_archive_and_its_indexes_as_they_were(pg_dsn: str, monkeypatch):  # type: ignore[no-untyped-def]
    import index.postgres.rows as rows
    import index.postgres.store as store_module

    store = PgStore(pg_dsn, "m", DIM)
    store.write(upserts=corpus(5))
    before = _index_definitions(store)
    manifest = store.snapshot().manifest

    def fail(*args: object) -> None:
        raise RuntimeError("the loader died mid-write")

    monkeypatch.setattr(rows, "BULK_MIN_CHUNKS", 10)
    monkeypatch.setattr(store_module, "insert", fail)
    with pytest.raises(RuntimeError, match="died"):
        store.write(upserts=corpus(60, seed=9)[5:])
    assert _index_definitions(store) == before
    after = store.snapshot().manifest
    assert (after.n_documents, after.n_chunks, after.generation) == (manifest.n_documents, manifest.n_chunks,
                                                                      manifest.generation)
    assert store.snapshot().lexical_query("harbour strike").search(3)


def test_ids_with_tabs_backslashes_and_newlines_survive_the_postings_copy(pg_dsn: str):
    """Postings go in by COPY's text format: an article id with its special characters is stored, found by BM25
    and deleted with its postings like any other."""
    store = PgStore(pg_dsn, "m", DIM)
    rng = np.random.default_rng(2)
    odd = article(0, rng, text="The harbour dredging contract was signed.")
    odd_id = "wire\\2024\tharbour\nstory\r1"
    odd = DocumentWrite(document=odd.document.model_copy(update={"id": odd_id}), sentences=odd.sentences,
                        chunks=[c.model_copy(update={"doc_id": odd_id}) for c in odd.chunks], vectors=odd.vectors)
    store.write(upserts=[odd, *corpus(10)[1:]])
    snap = store.snapshot()
    hits = snap.passages(snap.lexical_query("harbour dredging contract", doc_weight=0.6).search(3))
    assert hits[0][1].doc_id == odd_id
    docno, rowids = store.read(lambda cur: cur.execute(
        "SELECT d.docno, array_agg(c.rowid) FROM documents d JOIN chunks c ON c.doc_id = d.id WHERE d.id = %s "
        "GROUP BY d.docno", (odd_id,)).fetchone())
    postings = "SELECT count(*) FROM chunk_terms WHERE rowid = ANY(%s) UNION ALL " \
        "SELECT count(*) FROM doc_terms WHERE docno = %s"
    assert all(n > 0 for (n,) in store.read(lambda cur: cur.execute(postings, (rowids, docno)).fetchall()))
    store.write(deletes=[odd_id])
    left = store.read(lambda cur: cur.execute(postings, (rowids, docno)).fetchall())
    assert left == [(0,), (0,)]


def test_the_same_id_twice_in_one_write_keeps_the_last_as_a_data_directory_does(pg_dsn: str, tmp_path: Path):
    """Two identical articles in one request get the same derived id: the write stores the last, once, instead of
    breaking the primary key in COPY (a 500 the API fuzz test found)."""
    rng = np.random.default_rng(4)
    first = article(0, rng, text="The harbour strike ended on Monday.")
    second = article(0, rng, text="The prison appeal was heard on Tuesday.")
    for store in (PgStore(pg_dsn, "m", DIM), Store(tmp_path / "data", "m", DIM)):
        store.write(upserts=[first, second])
        snap = store.snapshot()
        assert (snap.manifest.n_documents, snap.manifest.n_chunks) == (1, 1)
        assert snap.document("a0").text == second.document.text
        assert snap.lexical_query("prison appeal").search(3) and not snap.lexical_query("harbour strike").search(3)
