"""API keys with scopes: who may read, write or administer the archive over HTTP.

Keys come from ``NEWSROOM_QA_API_KEY`` (one key with every scope) and from a keys file
(``NEWSROOM_QA_API_KEYS_FILE``, TOML)::

    [[keys]]
    name = "web-desk"                 # shown in logs and metrics instead of the key
    key_sha256 = "9f86d0..."          # or: key = "..." (16+ characters); the hash keeps the file free of secrets
    scopes = ["read", "write"]        # read: search, ask, chat, documents; write: add articles, delete
                                      # conversations; admin: delete articles

Only SHA-256 digests are kept in memory, and a presented key is compared with every configured digest in
constant time (``hmac.compare_digest``), so neither the answer nor its timing tells how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from index.errors import QAError

__all__ = ["SCOPES", "KeyRing", "Principal", "Scope"]

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
MIN_KEY_CHARS = 16


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    key: str | None = Field(default=None, min_length=MIN_KEY_CHARS)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_key(self) -> KeyEntry:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"key {self.name!r}: give exactly one of 'key' or 'key_sha256'")
        return self

    def digest(self) -> bytes:
        if self.key_sha256 is not None:
            return bytes.fromhex(self.key_sha256)
        assert self.key is not None
        return hashlib.sha256(self.key.encode()).digest()


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list)


class Principal(BaseModel):
    """Who made a request: a configured key's name and scopes, or the anonymous public."""

    name: str
    scopes: frozenset[str]

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


ANONYMOUS = Principal(name="anonymous", scopes=frozenset())


class KeyRing:
    """The configured keys, as digests. Built once at start-up from the settings."""

    def __init__(self, entries: list[tuple[str, bytes, frozenset[str]]]) -> None:
        names = [name for name, _, _ in entries]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise QAError(f"API key names must be unique; repeated: {', '.join(sorted(duplicates))}")
        self._entries = entries

    @classmethod
    def load(cls, admin_key: str | None, keys_file: Path | None) -> KeyRing:
        """:raises QAError: naming the problem when the keys file is missing or invalid."""
        entries: list[tuple[str, bytes, frozenset[str]]] = []
        if admin_key is not None:
            entries.append(("api-key", hashlib.sha256(admin_key.encode()).digest(), frozenset(SCOPES)))
        if keys_file is not None:
            try:
                parsed = KeysFile.model_validate(tomllib.loads(keys_file.read_text(encoding="utf-8")))
            except FileNotFoundError as exc:
                raise QAError(f"NEWSROOM_QA_API_KEYS_FILE: {keys_file} does not exist") from exc
            except ValidationError as exc:  # described without the input values: they may be keys
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                     for e in exc.errors(include_input=False))
                raise QAError(f"NEWSROOM_QA_API_KEYS_FILE: {keys_file} is not a valid keys file: {problems}") from None
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise QAError(f"NEWSROOM_QA_API_KEYS_FILE: {keys_file} is not a valid keys file: {exc}") from None
            entries += [(k.name, k.digest(), frozenset(k.scopes)) for k in parsed.keys]
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def authenticate(self, presented: str) -> Principal | None:
        """The key's principal, or None. Every digest is compared, whatever matched, in constant time each."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: Principal | None = None
        for name, stored, scopes in self._entries:
            if hmac.compare_digest(digest, stored) and found is None:
                found = Principal(name=name, scopes=scopes)
        return found
