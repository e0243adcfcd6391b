"""Plain-text rendering of answers and passages for the terminal, from the templates in ``prompts/``."""

from __future__ import annotations

from datetime import date

from index.models import Passage
from service.schemas import AnswerResponse

__all__ = ["flatten", "render_answer", "render_passages", "when"]

SNIPPET_CHARS = 220


def when(value: date | None, t: dict[str, str]) -> str:
    """A date for people, or the template's word for an undated article."""
    return value.isoformat() if value else t["unknown_date"]


def flatten(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One line of at most ``limit`` characters, cut with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _passages(passages: list[Passage], t: dict[str, str]) -> list[str]:
    lines = [t["nearest_heading"]] if passages else []
    for n, p in enumerate(passages, start=1):
        lines.append(t["passage"].format(n=n, source=p.source or t["unknown_source"],
                                         published=when(p.published, t), title=p.title,
                                         snippet=flatten(p.text)))
    return lines


def render_answer(response: AnswerResponse, t: dict[str, str], archive_empty: bool = False) -> str:
    """The answer, its supporting sentence and numbered citations; or the abstention and nearest passages.

    :param response: what ``QAService.ask`` returned.
    :param t: the ``[cli]`` templates.
    :param archive_empty: say that nothing is stored yet, rather than that nothing stored answers.
    """
    if response.abstained:
        if archive_empty:
            return t["empty_archive"]
        return "\n".join([t["abstain"], *_passages(response.passages, t)])
    lines = [t["answer"].format(answer=response.answer)]
    if response.supporting_sentence:
        lines.append(t["supporting"].format(sentence=" ".join(response.supporting_sentence.split())))
    lines.append(t["sources_heading"])
    for n, c in enumerate(response.citations, start=1):
        url_line = t["url_line"].format(url=c.url) if c.url else ""
        lines.append(t["citation"].format(n=n, source=c.source or t["unknown_source"],
                                          published=when(c.published, t), title=c.title,
                                          quote=" ".join(c.quote.split()), url_line=url_line))
    if response.sources_differ:
        lines.append(t["differ_heading"])
        for n, alt in enumerate(response.alternatives, start=len(response.citations) + 1):
            c = alt.citation
            lines.append(t["differ"].format(n=n, answer=alt.answer, source=c.source or t["unknown_source"],
                                            published=when(c.published, t), title=c.title,
                                            quote=" ".join(c.quote.split())))
    return "\n".join(lines)


def render_passages(passages: list[Passage], t: dict[str, str]) -> str:
    """Search results, best first: each passage's article, its offsets and text, the other outlets carrying it, and
    its per-signal scores when the search was asked to explain them.

    :param t: the ``[cli]`` templates.
    """
    if not passages:
        return t["no_passages"]
    lines = [t["passages_heading"]]
    for n, p in enumerate(passages, start=1):
        lines.append(t["search_result"].format(n=n, source=p.source or t["unknown_source"],
                                               published=when(p.published, t), title=p.title, doc_id=p.doc_id,
                                               start=p.start, end=p.end, snippet=flatten(p.text)))
        if p.also_in:
            lines.append(t["also_in"].format(sources="; ".join(
                t["also_in_source"].format(source=ref.source or t["unknown_source"], published=when(ref.published, t),
                                           doc_id=ref.doc_id) for ref in p.also_in)))
        if p.scores is not None:
            recency = t["signal_recency"].format(recency=p.scores.recency) if p.scores.recency is not None else ""
            lines.append(t["signals"].format(dense=p.scores.dense, lexical=p.scores.lexical, fused=p.scores.fused,
                                             recency=recency))
    return "\n".join(lines)
