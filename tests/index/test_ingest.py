"""Reading articles from plain text, Markdown, HTML and JSON Lines, and refusing what cannot be read."""

from __future__ import annotations

import json

import pytest

from index.errors import InvalidInput, UnsupportedFormat
from index.pipeline.ingest import iter_paths, load_path, parse_file
from tests.conftest import FIXTURE_ARTICLES


def test_text_file_with_sidecar_metadata():
    [doc] = load_path(FIXTURE_ARTICLES / "002_harbour-doubts.txt")
    assert doc.id == "002_harbour-doubts"
    assert doc.title == "Environmental groups question harbour dumping claim"
    assert doc.source == "Marren Daily (fictional)"
    assert str(doc.published) == "2024-03-13"
    assert doc.url == "https://example.org/marren-daily/harbour-doubts"


def test_text_file_without_metadata_takes_first_line_as_title():
    [doc] = parse_file("My Story.txt", b"Headline here\n\nBody text.")
    assert (doc.id, doc.title) == ("My-Story", "Headline here")


def test_markdown_is_turned_into_plain_paragraphs():
    [doc] = parse_file("note.md", b"# A heading\n\nSome *emphasis* and a [link](http://x).\n\n- item one\n")
    assert doc.title == "A heading"
    assert doc.text == "A heading\n\nSome emphasis and a link.\n\nitem one"


def test_html_main_text_is_extracted():
    body = " ".join(["The council voted on Monday to close the old bridge for repairs."] * 3)
    html = (f"<html><head><title>Bridge closes</title></head><body><nav>Home | News | Sport</nav>"
            f"<article><h1>Bridge closes</h1><p>{body}</p><p>Work starts in June, the mayor said.</p>"
            f"</article><footer>Cookie policy</footer><script>alert('x')</script></body></html>")
    [doc] = parse_file("bridge.html", html.encode())
    assert "The council voted on Monday" in doc.text
    assert "Work starts in June" in doc.text
    assert "alert(" not in doc.text and "Cookie policy" not in doc.text
    assert doc.title == "Bridge closes"


def test_jsonl_one_article_per_line():
    lines = [{"id": "a1", "title": "One", "text": "First text.", "source": "Wire", "published": "2020-01-02",
              "url": "https://example.org/1"},
             {"id": "a2", "title": "Two", "text": "Second text."}]
    docs = parse_file("batch.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    assert [d.id for d in docs] == ["a1", "a2"]
    assert docs[0].source == "Wire" and str(docs[0].published) == "2020-01-02"


def test_jsonl_bad_line_names_the_line():
    with pytest.raises(InvalidInput, match="line 2: not valid JSON"):
        parse_file("batch.jsonl", b'{"title": "One", "text": "x"}\n{oops\n')
    with pytest.raises(InvalidInput, match="line 1: text"):
        parse_file("batch.jsonl", b'{"title": "One", "text": "   "}\n')


def test_unsupported_file_type_is_refused():
    with pytest.raises(UnsupportedFormat, match=r"unsupported file type '\.pdf'"):
        parse_file("report.pdf", b"%PDF-1.4")


def test_undecodable_bytes_are_refused():
    with pytest.raises(UnsupportedFormat, match="not valid UTF-8"):
        parse_file("latin.txt", "Caf\u00e9 au lait".encode("latin-1"))


def test_unsafe_id_is_refused():
    with pytest.raises(InvalidInput, match="document id"):
        parse_file("batch.jsonl", b'{"id": "../../etc/passwd", "title": "x", "text": "y"}\n')


def test_directory_walk_skips_sidecars_and_readmes():
    names = [p.name for p in iter_paths([FIXTURE_ARTICLES])]
    assert names == ["001_harbour-report.txt", "002_harbour-doubts.txt"]
