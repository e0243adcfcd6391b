"""How much of a question's content a sentence holds, rare words weighing more: shared by the heuristic reader
(choosing the supporting sentence) and the span ranking (weighing a span's sentence)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["idf_coverage"]


def idf_coverage(asked: set[str], sentences: Sequence[set[str]], pool: Sequence[set[str]]) -> list[float]:
    """Share of the words ``asked`` each of ``sentences`` (as word sets) holds, each word weighted by its rarity among
    the sentences of ``pool`` (what was read): ``log((n + 1) / (df + 0.5))``."""
    if not asked:
        return [0.0] * len(sentences)
    df = Counter(t for terms in pool for t in asked & terms)
    weight = {t: math.log((len(pool) + 1) / (df.get(t, 0) + 0.5)) for t in asked}
    total = sum(weight.values()) or 1.0
    return [sum(weight[t] for t in asked & terms) / total for terms in sentences]
