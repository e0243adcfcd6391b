"""Build the reader named by the settings (once, at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from index.embedding.embedder import Embedder
from index.embedding.query_encoder import default_cache_dir
from index.errors import ModelUnavailable
from service.answering.attribution import Attributor
from service.answering.readers.base import Reader
from service.prompts import Prompts
from service.settings import Settings

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = ["HEURISTIC_ABSTAIN_BELOW", "build_reader"]

HEURISTIC_ABSTAIN_BELOW = 0.45


def build_reader(settings: Settings, embedder: Embedder, nlp: Language, prompts: Prompts,
                 attributor: Attributor | None = None) -> Reader:
    """The reader the settings ask for; a missing trained model is a clear start-up error, not a silent fallback.

    :param attributor: the service's, shared with the reader ("what did X say"); None: one made from the prompts.
    """
    if settings.reader == "heuristic":
        from service.answering.readers.heuristic import HeuristicReader

        threshold = HEURISTIC_ABSTAIN_BELOW if settings.abstain_below is None else settings.abstain_below
        return HeuristicReader(embedder, nlp, prompts, abstain_below=threshold)

    from service.answering.answer_core import AnswerCore
    from service.answering.attribution import load_attribution_rules
    from service.answering.readers.calibration import Calibration
    from service.answering.readers.span_model import SpanModel
    from service.answering.readers.span_ranking import SpanRanking
    from service.answering.readers.transformer import BUNDLED_READER, TransformerReader
    from service.answering.relations import Relations, load_relation_rules
    from service.answering.span_types import SpanTypes
    from service.answering.stances import load_stances

    if settings.reader == "trained":
        if not (BUNDLED_READER / "config.json").is_file():
            raise ModelUnavailable(f"the trained reader is missing from {BUNDLED_READER}: reinstall the package, "
                                   "or set NEWSROOM_QA_READER=heuristic")
        name = str(BUNDLED_READER)
    elif settings.reader_model:
        name = settings.reader_model
    else:
        raise ModelUnavailable("NEWSROOM_QA_READER=transformers needs NEWSROOM_QA_READER_MODEL (a local path or "
                               "a hub id of an extractive question-answering model)")
    model = SpanModel(name, max_length=settings.reader_max_length, backend=settings.reader_backend,
                      cache_dir=settings.cache_dir or default_cache_dir())
    # A local model directory may carry its own calibration.json (ours does); a hub model is uncalibrated.
    calibration = Calibration.load(Path(name), settings.reader_calibration) if Path(name).is_dir() else Calibration()
    ranking = SpanRanking.load(Path(name)) if Path(name).is_dir() and settings.reader_span_ranking else None
    prompts_dir = settings.prompts_dir
    return TransformerReader(model, calibration, abstain_below=settings.abstain_below, ranking=ranking,
                             embed=embedder.embed_few if embedder is not None else None,  # None: a reader alone
                             span_types=SpanTypes(nlp, prompts), core=AnswerCore(nlp, prompts),
                             stances=load_stances(prompts_dir / "stances.toml"),
                             relations=Relations(nlp, load_relation_rules(prompts_dir / "relations.toml")),
                             attributor=attributor or Attributor(nlp, load_attribution_rules(
                                 prompts_dir / "attribution.toml")))
