"""Reads articles from files (plain text, Markdown, HTML, JSON Lines) into ``DocumentIn`` records.

A file may have a sidecar ``<stem>.meta.json`` with ``title``, ``source``, ``published``, ``url`` (and
optionally ``id``); without one, the title is taken from the file and the id from its name, so re-adding the same
file replaces the stored copy instead of duplicating it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import trafilatura
from markdown_it import MarkdownIt
from pydantic import ValidationError

from index.errors import InvalidInput, UnsupportedFormat
from index.models import DocumentIn

__all__ = ["SUPPORTED_SUFFIXES", "iter_paths", "load_path", "parse_file"]

SUPPORTED_SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
                      ".htm": "html", ".jsonl": "jsonl"}
META_SUFFIX = ".meta.json"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


def _id_from_name(name: str) -> str:
    stem = Path(name).name
    for suffix in SUPPORTED_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    safe = _ID_UNSAFE.sub("-", stem).strip("-._:")[:128]
    if not safe:
        raise InvalidInput(f"cannot derive a document id from the file name {name!r}; give an id in its metadata")
    return safe


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsupportedFormat(
            f"{name}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at position {exc.start}); "
            "save the file as UTF-8 and add it again"
        ) from exc


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if 3 <= len(line) <= 300:
            return line
    return None


def _markdown_to_text(source: str) -> tuple[str, str | None]:
    """Plain text of a Markdown file, one block per paragraph, and its first heading."""
    blocks: list[str] = []
    heading: str | None = None
    in_heading = False
    for token in MarkdownIt().parse(source):
        if token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline" and token.children is not None:
            parts = [c.content if c.type in ("text", "code_inline") else "\n" if c.type in
                     ("softbreak", "hardbreak") else "" for c in token.children]
            text = "".join(parts).strip()
            if text:
                if in_heading and heading is None:
                    heading = text
                blocks.append(text)
        elif token.type in ("code_block", "fence") and token.content.strip():
            blocks.append(token.content.strip())
    return "\n\n".join(blocks), heading


def _html_to_fields(name: str, data: bytes) -> dict[str, Any]:
    """Main text and metadata of a web page, via trafilatura (boilerplate, menus and ads removed)."""
    text = trafilatura.extract(data, output_format="txt", include_comments=False, include_tables=True,
                               favor_recall=True)
    if not text or not text.strip():
        raise InvalidInput(f"{name}: no article text found in this HTML page")
    meta = trafilatura.extract_metadata(data)
    fields: dict[str, Any] = {"text": text}
    if meta is not None:
        fields.update({"title": meta.title, "source": meta.sitename, "url": meta.url,
                       "published": (meta.date or None)})
    return {k: v for k, v in fields.items() if v}


def _validated(name: str, fields: dict[str, Any]) -> DocumentIn:
    try:
        return DocumentIn.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
                             for e in exc.errors())
        raise InvalidInput(f"{name}: {problems}") from exc


def _parse_jsonl(name: str, text: str) -> list[DocumentIn]:
    docs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{name}, line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"{name}, line {number}: expected a JSON object with id, title, text")
        docs.append(_validated(f"{name}, line {number}", record))
    if not docs:
        raise InvalidInput(f"{name}: no articles found (expected one JSON object per line)")
    return docs


def parse_file(name: str, data: bytes, meta: dict[str, Any] | None = None) -> list[DocumentIn]:
    """Parse one file's bytes into articles.

    :param name: the file name; its suffix picks the format and its stem is the default id.
    :param data: the file content.
    :param meta: sidecar metadata (title, source, published, url, id) overriding what the file says.
    :returns: one article, or one per line for JSON Lines.
    :raises UnsupportedFormat: for an unknown suffix or undecodable bytes.
    :raises InvalidInput: when the file holds no usable article.
    """
    suffix = Path(name).suffix.lower()
    kind = SUPPORTED_SUFFIXES.get(suffix)
    if kind is None:
        raise UnsupportedFormat(
            f"{name}: unsupported file type {suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    if kind == "jsonl":
        return _parse_jsonl(name, _decode(name, data))
    if kind == "html":
        fields = _html_to_fields(name, data)
    elif kind == "markdown":
        text, heading = _markdown_to_text(_decode(name, data))
        fields = {"text": text, "title": heading or _first_line(text)}
    else:
        text = _decode(name, data)
        fields = {"text": text, "title": _first_line(text)}
    fields["id"] = _id_from_name(name)
    fields.update({k: v for k, v in (meta or {}).items() if v is not None})
    fields.setdefault("title", None)
    if not fields["title"]:
        fields["title"] = _id_from_name(name)
    return [_validated(name, fields)]


def _read_meta(path: Path) -> dict[str, Any] | None:
    meta_path = path.with_name(path.name[: -len(path.suffix)] + META_SUFFIX)
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{meta_path}: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise InvalidInput(f"{meta_path}: expected a JSON object")
    return meta


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield the article files among ``paths``, walking directories in name order.

    Sidecars (``*.meta.json``) and READMEs inside a directory are not articles and are skipped.
    """
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file()
                        and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.endswith(META_SUFFIX)
                        and not p.name.upper().startswith("README"))
        elif path.is_file():
            yield path
        else:
            raise InvalidInput(f"{path}: no such file or directory")


def load_path(path: Path) -> list[DocumentIn]:
    """Read one article file (with its sidecar metadata, if any)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror})") from exc
    return parse_file(path.name, data, _read_meta(path))
