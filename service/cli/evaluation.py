"""``newsroom-qa eval retrieval|reader``: retrieval and reader quality on public sets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass

from service.cli.common import _friendly_errors, _service, backend_options, cli


@cli.group("eval")
def eval_group() -> None:
    """Measure retrieval (and later the reader) on public test collections."""


@eval_group.command("retrieval")
@click.option("--beir", "beir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A BEIR directory (corpus.jsonl, queries.jsonl, qrels/).")
@click.option("--split", default="test", show_default=True, help="BEIR qrels split to score.")
@click.option("--time", "time_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The TIME collection in SMART layout (TIME.ALL, TIME.QUE, TIME.REL).")
@click.option("--cranfield", "cranfield", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="The Cranfield collection in SMART layout (cran.all.1400, cran.qry, cranqrel).")
@click.option("--squad", "squad", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A SQuAD-format file (e.g. NewsQA): question -> chunk holding the answer.")
@click.option("--half", type=click.Choice(["dev", "test"]), default=None,
              help="With --squad: score only the dev (even) or test (odd) questions.")
@click.option("--level", type=click.Choice(["chunk", "document"]), default="chunk", show_default=True,
              help="With --squad: judge the chunk holding the answer, or the whole story.")
@click.option("--alpha", "alphas", type=float, multiple=True,
              help="Dense weight(s) of the weighted fusion to score (default: the configured one).")
@click.option("--doc-weight", "doc_weights", type=float, multiple=True,
              help="Whole-article share(s) of the BM25 signal to score (default: the configured one).")
@click.option("--dense-doc-weight", "dense_doc_weights", type=float, multiple=True,
              help="Article-centroid share(s) of the dense signal to score (default: the configured one).")
@click.option("--feedback-terms", "feedback_terms", type=int, multiple=True,
              help="Pseudo-relevance feedback word count(s) to score (default: the configured one).")
@click.option("--feedback-weight", "feedback_weights", type=float, multiple=True,
              help="Pseudo-relevance feedback weight(s) to score (default: the configured one).")
@click.option("--bm25", "bm25_params", type=(float, float), multiple=True, metavar="K1 B",
              help="Also score the hybrid grid with BM25 rebuilt with these k1 and b (repeatable).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the ingested collection here and reuse it next time (default: a temporary directory).")
@backend_options
@_friendly_errors
def eval_retrieval(beir: Path | None, split: str, time_dir: Path | None, cranfield: Path | None,
                   squad: Path | None, half: str | None,
                   level: str, alphas: tuple[float, ...], doc_weights: tuple[float, ...],
                   dense_doc_weights: tuple[float, ...], feedback_terms: tuple[int, ...],
                   feedback_weights: tuple[float, ...], bm25_params: tuple[tuple[float, float], ...],
                   report: Path | None, data_dir: Path | None) -> None:
    """nDCG@10, recall@5/10/100 and MRR@10 for lexical, dense, RRF and weighted hybrid retrieval."""
    import tempfile

    from service.evaluation.retrieval import (
        evaluate,
        format_report,
        load_beir,
        load_cranfield,
        load_squad_retrieval,
        load_time,
    )

    if sum(x is not None for x in (beir, time_dir, cranfield, squad)) != 1:
        raise click.UsageError("give exactly one of --beir DIR, --time DIR, --cranfield DIR, --squad FILE")
    source = beir or time_dir or cranfield or squad
    try:
        if beir is not None:
            collection = load_beir(beir, split)
        elif time_dir is not None:
            collection = load_time(time_dir)
        elif cranfield is not None:
            collection = load_cranfield(cranfield)
        else:
            assert squad is not None
            collection = load_squad_retrieval(squad, half, level)
    except (ValueError, KeyError, IndexError) as exc:  # a damaged or foreign file (json, ints, fields)
        raise click.ClickException(f"cannot read the collection in {source}: {type(exc).__name__}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="newsroom-qa-eval-") as tmp:
        service = _service(data_dir or Path(tmp), seed_if_empty=False)
        settings = service.settings
        from index.retrieval import RetrievalOptions

        grid = [RetrievalOptions(alpha=a, doc_weight=g, dense_doc_weight=d, feedback_terms=f, feedback_weight=w)
                for a in (alphas or [settings.fusion_alpha])
                for g in (doc_weights or [settings.lexical_doc_weight])
                for d in (dense_doc_weights or [settings.dense_doc_weight])
                for f in (feedback_terms or [settings.feedback_terms])
                for w in (feedback_weights or [settings.feedback_weight])]
        result = evaluate(service, collection, grid=grid, bm25_grid=list(bm25_params))
    click.echo(format_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2), encoding="utf-8")
        click.echo(f"report written to {report}", err=True)


reader_option = click.option("--reader", type=click.Choice(["trained", "transformers", "heuristic"]), default=None,
                             help="Reader to use (default: NEWSROOM_QA_READER, else the trained one).")
reader_model_option = click.option("--reader-model", default=None,
                                   help="With --reader transformers: a QA model's local path or hub id.")


@eval_group.command("reader")
@click.argument("squad_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gold-context", "mode", flag_value="gold", default=True,
              help="Give the reader the paragraph the question was written on (default).")
@click.option("--open", "mode", flag_value="open",
              help="End to end: store every paragraph of the file and answer from retrieval.")
@click.option("--split", "splits", type=click.Choice(["heldout", "tune", "train"]), multiple=True,
              help="Which fixed split(s) of the file to score (default: heldout, never trained or tuned on).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N questions.")
@reader_option
@reader_model_option
@click.option("--abstain-below", type=click.FloatRange(0, 1), default=None,
              help="Override the reader's abstention threshold.")
@click.option("--calibration", type=click.Choice(["gold", "open"]), default=None,
              help="Which of the reader's calibrations to score with (default: the service's, READER_CALIBRATION).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here (a reliability plot goes beside it as .png).")
@click.option("--per-question/--figures-only", default=True, show_default=True,
              help="Include every question's prediction in the report, or only the aggregate figures.")
@_friendly_errors
def eval_reader(squad_file: Path, mode: str, splits: tuple[str, ...], limit: int | None, reader: str | None,
                reader_model: str | None, abstain_below: float | None, calibration: str | None, report: Path | None,
                per_question: bool) -> None:
    """EM/F1 (official SQuAD normalisation), HasAns/NoAns, sentence accuracy, calibration and latency."""
    import tempfile

    from tqdm import tqdm

    from service.answering.readers.squad_data import load_squad
    from service.evaluation.reader import evaluate_reader, format_reader_report, reliability_plot

    load_squad(squad_file)  # a malformed file fails here, before the models load
    with tempfile.TemporaryDirectory(prefix="newsroom-qa-eval-") as tmp:
        extra = {"reader_calibration": calibration} if calibration else {}
        service = _service(Path(tmp), seed_if_empty=False, reader=reader, reader_model=reader_model,
                           abstain_below=abstain_below, **extra)
        result = evaluate_reader(service, squad_file, mode="open" if mode == "open" else "gold",
                                 splits=tuple(splits) or ("heldout",), limit=limit,  # type: ignore[arg-type]
                                 progress=lambda it: tqdm(list(it), desc="questions", unit="q"))
    click.echo(format_reader_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        plot = reliability_plot(result, report.with_suffix(".png"))
        if not per_question:
            result.pop("questions")
        report.write_text(json.dumps(result, indent=2), encoding="utf-8")
        click.echo(f"report written to {report}, reliability plot to {plot}", err=True)
