"""Metadata filters as SQL conditions over ``documents d``, applied inside the database by every search."""

from __future__ import annotations

from dataclasses import dataclass

from index.models import Filters

__all__ = ["PgRestriction", "condition", "merge_params", "restriction"]


@dataclass(frozen=True)
class PgRestriction:
    """Metadata filters as a SQL condition over ``documents d`` (what ``allowed_rowids`` returns)."""

    sql: str
    params: tuple[object, ...]


def restriction(filters: Filters | None) -> PgRestriction | None:
    """The filters as a condition, or None when they restrict nothing."""
    if filters is None or filters.is_empty():
        return None
    where: list[str] = []
    params: list[object] = []
    if filters.sources:
        where.append("d.source = ANY(%s)")
        params.append(list(filters.sources))
    if filters.doc_ids:
        where.append("d.id = ANY(%s)")
        params.append(list(filters.doc_ids))
    if filters.published_from:
        where.append("d.published >= %s")
        params.append(filters.published_from)
    if filters.published_to:
        where.append("d.published <= %s")
        params.append(filters.published_to)
    return PgRestriction(" AND ".join(where), tuple(params))


def condition(allowed: PgRestriction | None) -> str:
    """The filter's SQL with its ``%s`` placeholders named ``%(f0)s``, ``%(f1)s``... (queries use named ones)."""
    if allowed is None:
        return "true"
    pieces = allowed.sql.split("%s")
    return "".join(piece + (f"%(f{i})s" if i < len(pieces) - 1 else "") for i, piece in enumerate(pieces))


def merge_params(params: dict[str, object], allowed: PgRestriction | None) -> dict[str, object]:
    """``params`` with the filter's values under the names ``condition`` gave them."""
    if allowed is None:
        return params
    return {**params, **{f"f{i}": v for i, v in enumerate(allowed.params)}}


