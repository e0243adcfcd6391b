"""When segments are merged: Lucene's log merge policy, counted in chunks (``Store`` runs the merges)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from index.local.segment import SegmentView

__all__ = ["MergePolicy"]


class MergePolicy(BaseModel):
    """Which segments to merge: Lucene's log merge policy, counted in chunks.

    Segments are grouped in tiers by size (``floor_chunks`` x ``segments_per_tier`` ^ tier); when a tier holds
    ``segments_per_tier`` segments, its smallest ones are merged into one of the next tier. Each chunk is therefore
    copied about log(archive / floor) times over its life, and a search reads at most ``segments_per_tier`` - 1
    segments per tier.
    """

    segments_per_tier: int = Field(default=10, ge=2)
    floor_chunks: int = Field(default=2_000, ge=1, description="Smaller segments all count as this size.")
    deletes_allowed: float = Field(default=0.3, gt=0.0, le=1.0,
                                   description="A segment with more than this share of its articles deleted is "
                                               "rewritten without them.")

    def plan(self, views: Sequence[SegmentView]) -> list[str]:
        """Names of the segments to merge next (empty: nothing to do)."""
        tiers: dict[int, list[tuple[int, str]]] = {}
        for view in views:
            size = max(view.n_live_chunks, self.floor_chunks)
            tier = int(math.log(size / self.floor_chunks, self.segments_per_tier) + 1e-9)
            tiers.setdefault(tier, []).append((view.n_live_chunks, view.segment.name))
        for tier in sorted(tiers):
            members = sorted(tiers[tier])
            if len(members) >= self.segments_per_tier:
                return [name for _, name in members[: self.segments_per_tier]]
        for view in views:
            n = view.segment.info.n_documents
            if n and len(view.deleted) / n > self.deletes_allowed:
                return [view.segment.name]
        return []
