"""``newsroom-qa train-reader`` and ``calibrate-reader``: fine-tune and calibrate the span reader."""
from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from service.answering.readers.calibration import Calibration

from service.cli.common import _friendly_errors, _quiet_libraries, _service, cli


@cli.command("train-reader")
@click.argument("squad_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoints and logs; an interrupted run resumes from here.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the trained model (default: the package's bundled reader).")
@click.option("--base-model", default=None, help="Encoder to start from (default: the bundled all-MiniLM-L6-v2).")
@click.option("--epochs", type=click.FloatRange(min=0.01), default=3.0, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=1e-7), default=1e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-length", type=click.IntRange(min=64, max=512), default=384, show_default=True,
              help="Tokens per training window.")
@click.option("--warmup", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="Share of the steps with a rising learning rate.")
@click.option("--oversample", "oversample", multiple=True, metavar="NAME=K",
              help="Repeat a data set's training questions K times (e.g. newsqa=3); NAME as in the file name.")
@click.option("--threads", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True)
@click.option("--skip-training", is_flag=True, help="Only export and calibrate the last checkpoint.")
@_friendly_errors
def train_reader_command(squad_files: tuple[Path, ...], run_dir: Path, export_dir: Path | None, base_model: str | None,
                         epochs: float, learning_rate: float, batch_size: int, max_length: int, warmup: float,
                         oversample: tuple[str, ...], threads: int, skip_training: bool) -> None:
    """Fine-tune a span reader on the train split of SQuAD-format files, then export and calibrate it.

    The tune split chooses the abstention threshold and calibration; the heldout split is left for
    'newsroom-qa eval reader'. Resumable: run the same command again after an interruption.
    """
    from tqdm import tqdm

    from index.embedding.embedder import bundled_model_path
    from service.answering.readers.calibrate import calibrate_model
    from service.answering.readers.model_card import write_model_card
    from service.answering.readers.span_model import SpanModel
    from service.answering.readers.squad_data import dataset_name, load_squad
    from service.answering.readers.training import TrainConfig, export_model, train_reader
    from service.answering.readers.transformer import BUNDLED_READER

    _quiet_libraries()
    repeat: dict[str, int] = {}
    for item in oversample:
        name, _, times = item.partition("=")
        if not times.isdigit() or int(times) < 1:
            raise click.BadParameter(f"expected NAME=K with K >= 1, got {item!r}", param_hint="--oversample")
        repeat[name] = int(times)
    data = "train split of " + ", ".join(
        f.name + (f" (x{repeat[n]})" if (n := dataset_name(f)) in repeat else "") for f in squad_files)
    checkpoint = run_dir / "checkpoint.pt"
    if not skip_training:
        examples = [ex for f in squad_files for ex in load_squad(f, ["train"]) * repeat.get(dataset_name(f), 1)]
        click.echo(f"training on {len(examples)} questions: {data}", err=True)
        config = TrainConfig(base_model=base_model or str(bundled_model_path(verify=True)), epochs=epochs,
                             learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
                             stride=max_length // 3, warmup=warmup, threads=threads)
        with tqdm(desc="training", unit="step") as bar:
            def progress(step: int, total: int, loss: float) -> None:
                bar.total = total
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

            checkpoint = train_reader(examples, config, run_dir, progress)
    elif not checkpoint.is_file():
        raise click.ClickException(f"no checkpoint in {run_dir}: train first")
    target = export_model(checkpoint, export_dir or BUNDLED_READER, data=data)
    click.echo(f"model written to {target}; calibrating on the tune split", err=True)
    calibration = calibrate_model(SpanModel(target), list(squad_files),
                                  progress=lambda it: tqdm(list(it), desc="calibrating", unit="q"))
    calibration.save(target)
    write_model_card(target, squad_files, calibration)
    click.echo(f"calibration: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}, "
               f"abstain below {calibration.threshold}")


@cli.command("calibrate-reader")
@click.argument("squad_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Model directory to calibrate (default: the reader shipped with the package).")
@click.option("--open", "open_setting", is_flag=True,
              help="Refit over an archive, as the service reads (every paragraph of each file stored, questions "
                   "answered through retrieval): writes calibration-open.json, used with READER_CALIBRATION=open.")
@click.option("--with-rank/--without-rank", default=True, show_default=True,
              help="With --open: fit beside the margin the answer's article's rank among the retrieved articles "
                   "that offer an answer (an answer is less sure when articles above its own offer theirs; see "
                   "docs/reader-quality.md for what it trades). --without-rank fits the margin alone.")
@click.pass_context
@_friendly_errors
def calibrate_reader_command(ctx: click.Context, squad_files: tuple[Path, ...], model_dir: Path | None,
                             open_setting: bool, with_rank: bool) -> None:
    """Refit a reader's calibration and abstention threshold on the tune split (after changing how spans are
    ranked, or for a model trained elsewhere); rewrites calibration.json (or with --open calibration-open.json)
    and the model card."""
    from tqdm import tqdm

    from service.answering.readers.calibrate import calibrate_model
    from service.answering.readers.calibration import Calibration
    from service.answering.readers.model_card import write_model_card
    from service.answering.readers.span_model import SpanModel
    from service.answering.readers.squad_data import load_squad
    from service.answering.readers.transformer import BUNDLED_READER

    if ctx.get_parameter_source("with_rank") is click.core.ParameterSource.COMMANDLINE and not open_setting:
        raise click.UsageError("--with-rank/--without-rank refit the calibration over an archive: give --open too")
    for path in squad_files:
        load_squad(path)  # a malformed file fails before the model loads
    target = model_dir or BUNDLED_READER
    _quiet_libraries()
    if open_setting:
        calibration = _calibrate_open(target, squad_files, bundled=model_dir is None, with_rank=with_rank)
        if (target / "training.json").is_file():  # the card states both calibrations
            write_model_card(target, squad_files, Calibration.load(target, "gold"))
        rank = (f", article rank weight {calibration.rank_weight:.3f} (articles above counted from margin "
                f"{calibration.rank_margin:.2f})") if with_rank else ""
        click.echo(f"open-setting calibration: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}"
                   f"{rank}, abstain below {calibration.threshold}")
        return
    calibration = calibrate_model(SpanModel(target), list(squad_files),
                                  progress=lambda it: tqdm(list(it), desc="calibrating", unit="q"))
    calibration.save(target)
    if (target / "training.json").is_file():
        write_model_card(target, squad_files, calibration)
    click.echo(f"calibration: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}, "
               f"abstain below {calibration.threshold}")


def _bar(items: Iterable[Any], desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(list(items), desc=desc, unit="q")


def _calibrate_open(target: Path, squad_files: tuple[Path, ...], bundled: bool, with_rank: bool) -> Calibration:
    """Answer each file's tune questions over an archive of all its paragraphs with no threshold, refit the gold
    calibration (``with_rank``: and the weight of the answer's article rank) on what came back (``refit_open``) and
    save it beside the model as calibration-open.json."""
    import tempfile

    from service.answering.readers.calibration import Calibration, refit_open
    from service.evaluation.reader import evaluate_reader

    base = Calibration.load(target, "gold")
    confidences: list[float | None] = []
    f1s: list[float] = []
    answerable: list[bool] = []
    above: list[list[float] | None] = []
    for path in squad_files:
        with tempfile.TemporaryDirectory(prefix="newsroom-qa-calibrate-") as tmp:
            service = _service(Path(tmp), seed_if_empty=False, reader="trained" if bundled else "transformers",
                               reader_model=None if bundled else str(target), reader_calibration="gold",
                               abstain_below=0.0)
            service.reader.promoted_min = 0.0  # type: ignore[attr-defined]  # every answer the rules allow
            report = evaluate_reader(service, path, mode="open", splits=("tune",),
                                     progress=partial(_bar, desc=f"calibrating on {path.name}"))
        for q in report["questions"]:
            confidences.append(q["confidence"] if q["prediction"] else None)
            f1s.append(q["f1"])
            answerable.append(q["answerable"])
            above.append(q["ranked_above"])
    names = ", ".join(p.name for p in squad_files)
    try:
        calibration = refit_open(base, confidences, f1s, answerable,
                                 fitted_on=f"open setting, tune split of {names} ({len(answerable)} q)",
                                 above=above if with_rank else None)
    except ValueError as exc:  # too few questions, or none answered right
        raise click.ClickException(str(exc)) from exc
    calibration.save(target, "open")
    return calibration
