"""Readers: SQuAD metrics and splits, the span model and training on a tiny model the test builds, calibration,
answers mapped to exact article offsets, disagreement and speaker attribution."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from index.errors import InvalidInput, ModelUnavailable
from index.models import DocumentIn, Passage
from service.answering.disagreement import answer_kind, differ
from service.answering.readers.calibration import Calibration, fit_calibration
from service.answering.readers.span_model import SpanModel
from service.answering.readers.squad_data import SquadExample, load_squad, split_of
from service.answering.readers.squad_metrics import f1_score, normalize_answer, score_prediction
from service.answering.readers.training import TrainConfig, export_model, train_reader
from service.answering.readers.transformer import merge_passages
from tests.conftest import build_service, make_settings
from tests.tiny_models import save_tiny_qa_model

CONTEXT = ("The Marren Water Trust, whose analyst Tomas Lindqvist has studied the estuary for a decade, doubted the "
           "pipeline claim. The harbour authority said the pipeline carried rainwater.")


@pytest.fixture(scope="module")
def tiny_qa_model(tmp_path_factory) -> Path:
    """A randomly initialised one-layer BERT QA model with MiniLM's vocabulary: plumbing only, no quality."""
    return save_tiny_qa_model(tmp_path_factory.mktemp("tiny") / "tiny-qa")


def squad_file(path: Path) -> Path:
    data = {"version": "v2.0", "data": [{"title": "Marren", "paragraphs": [
        {"context": CONTEXT, "qas": [
            {"id": "q1", "question": "Who doubted the pipeline claim?", "is_impossible": False,
             "answers": [{"text": "The Marren Water Trust", "answer_start": 0}]},
            {"id": "q2", "question": "Who is Lindqvist's analyst?", "is_impossible": False,
             "answers": [{"text": "Tomas Lindqvist", "answer_start": CONTEXT.index("Tomas")}]},
            {"id": "q3", "question": "How many barrels were dumped in 1950?", "is_impossible": True, "answers": []},
        ]}]}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- metrics and data --------------------------------------------------------------------------------------
def test_official_squad_normalisation_and_scores():
    assert normalize_answer("The  Amnesty, International!") == "amnesty international"
    assert f1_score("between 5,000 and 11,000", "5,000 and 11,000") == pytest.approx(2 * 0.75 / 1.75)
    assert score_prediction(["Tomas Lindqvist", "Lindqvist"], "lindqvist") == (1.0, 1.0)
    assert score_prediction([], "") == (1.0, 1.0)  # a right abstention
    assert score_prediction([], "anything") == (0.0, 0.0)
    assert score_prediction(["March"], "") == (0.0, 0.0)


def test_splits_are_fixed_and_proportional():
    rng = random.Random(1)
    contexts = [" ".join(str(rng.random()) for _ in range(5)) for _ in range(3000)]
    assert [split_of("squad11", c) for c in contexts[:50]] == [split_of("squad11", c) for c in contexts[:50]]
    share = sum(split_of("squad11", c) == "heldout" for c in contexts) / len(contexts)
    assert 0.08 < share < 0.12
    share = sum(split_of("newsqa", c) == "heldout" for c in contexts) / len(contexts)
    assert 0.46 < share < 0.54


def test_load_squad_flags_unanswerable_and_refuses_bad_files(tmp_path):
    examples = load_squad(squad_file(tmp_path / "mini-v2.0.json"))
    assert [e.is_impossible for e in examples] == [False, False, True]
    assert examples[0].dataset == "squad2"
    (tmp_path / "bad.json").write_text("{\"data\": 3}", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not a SQuAD-format"):
        load_squad(tmp_path / "bad.json")


# --- span model and transformer reader on a tiny model -----------------------------------------------------
def test_span_model_returns_exact_character_spans_across_windows(tiny_qa_model):
    model = SpanModel(tiny_qa_model, max_length=64, stride=16)
    long_context = " ".join([CONTEXT] * 8)  # several 64-token windows
    preds = model.predict("Who doubted the pipeline claim?", [CONTEXT, long_context], top_n=10)
    assert preds, "a model always proposes spans"
    assert {p.context_index for p in preds} <= {0, 1}
    for p in preds:
        text = [CONTEXT, long_context][p.context_index]
        assert 0 <= p.start < p.end <= len(text)
        assert text[p.start:p.end] == text[p.start:p.end].strip()
    assert [p.score for p in preds] == sorted((p.score for p in preds), reverse=True)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_reads_windows_like_pytorch_at_the_same_offsets(tiny_qa_model, precision):
    torch_model = SpanModel(tiny_qa_model, max_length=64, stride=16, precision=precision, backend="torch")
    openvino = SpanModel(tiny_qa_model, max_length=64, stride=16, precision=precision, backend="openvino")
    assert (torch_model.backend, openvino.backend) == ("torch", "openvino") and openvino.model is None
    contexts = [CONTEXT, " ".join([CONTEXT] * 8), "Lindqvist doubted it."]  # 1, several and 1 windows, lengths mixed
    enc = torch_model.tokenizer(["Who doubted the pipeline claim?"] * 3, contexts, truncation="only_second",
                                max_length=64, stride=16, return_overflowing_tokens=True, padding=True,
                                return_tensors="pt")
    assert len(enc["input_ids"]) > 2 * openvino._openvino.parallel_requests  # every request is used again
    want, got = torch_model._logits(enc), openvino._logits(enc)
    assert max(float(abs(w - g).max()) for w, g in zip(want, got, strict=True)) < 0.05
    question = "Who doubted the pipeline claim?"
    assert [(p.context_index, p.start, p.end) for p in openvino.predict(question, contexts, top_n=5)] == \
        [(p.context_index, p.start, p.end) for p in torch_model.predict(question, contexts, top_n=5)]


def test_the_reader_stays_on_pytorch_where_openvino_cannot_run_it(tiny_qa_model, monkeypatch, caplog):
    import sys

    from service.answering.readers import openvino_logits

    monkeypatch.setattr(openvino_logits, "MAX_LOGIT_DIFFERENCE", {True: -1.0, False: -1.0})  # no output matches
    with caplog.at_level("INFO", logger="service.answering.readers.span_model"):
        assert SpanModel(tiny_qa_model, max_length=64, backend="auto").backend == "torch"
    assert "OpenVINO's logits differ from PyTorch's" in caplog.text
    with pytest.raises(ModelUnavailable, match="cannot run the reader on OpenVINO: OpenVINO's logits differ"):
        SpanModel(tiny_qa_model, max_length=64, backend="openvino")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    fallback = SpanModel(tiny_qa_model, max_length=64, stride=16, backend="auto")
    assert fallback.backend == "torch" and fallback.predict("Who doubted it?", [CONTEXT])
    with pytest.raises(ModelUnavailable, match="openvino is not installed"):
        SpanModel(tiny_qa_model, max_length=64, backend="openvino")


def test_the_converted_reader_is_kept_in_the_cache_and_a_damaged_one_converted_again(tiny_qa_model, tmp_path):
    question, contexts = "Who doubted the pipeline claim?", [CONTEXT, "Lindqvist doubted it."]
    first = SpanModel(tiny_qa_model, max_length=64, stride=16, backend="openvino", cache_dir=tmp_path)
    assert first._openvino is not None and first._openvino.converted_by == "child"  # its memory left with it
    (kept,) = (tmp_path / "openvino").glob("reader-*/model.xml")
    assert not list((tmp_path / "openvino").glob("*.tmp-*"))
    later = SpanModel(tiny_qa_model, max_length=64, stride=16, backend="openvino", cache_dir=tmp_path)
    assert later._openvino is not None and later._openvino.from_cache
    assert later.predict(question, contexts) == first.predict(question, contexts)
    kept.write_text("<net>truncated")
    again = SpanModel(tiny_qa_model, max_length=64, stride=16, backend="openvino", cache_dir=tmp_path)
    assert again._openvino is not None and not again._openvino.from_cache
    assert kept.read_text().startswith("<?xml")  # replaced by the new conversion
    assert again.predict(question, contexts) == first.predict(question, contexts)


def test_the_reader_is_converted_here_when_the_child_process_cannot(tiny_qa_model, tmp_path, monkeypatch, caplog):
    import sys

    from service.answering.readers.openvino_convert import main

    assert main([]) == 2  # usage
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "out"), "input_ids"]) == 1  # no model there
    assert not (tmp_path / "out").exists()
    question, contexts = "Who doubted the pipeline claim?", [CONTEXT, "Lindqvist doubted it."]
    reference = SpanModel(tiny_qa_model, max_length=64, stride=16, backend="torch", precision="fp32")
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the child exits at once with status 1
    with caplog.at_level("INFO", logger="service.answering.readers.openvino_logits"):
        model = SpanModel(tiny_qa_model, max_length=64, stride=16, backend="openvino", precision="fp32",
                          cache_dir=tmp_path)
    assert model._openvino is not None and model._openvino.converted_by == "this process"
    assert "converting the reader in a child process failed (exit status 1)" in caplog.text
    assert list((tmp_path / "openvino").glob("reader-*/model.xml"))  # kept for the next start all the same
    spans = [(p.context_index, p.start, p.end) for p in model.predict(question, contexts)]
    assert spans == [(p.context_index, p.start, p.end) for p in reference.predict(question, contexts)]


def test_the_reader_backend_setting_reaches_the_reader(tiny_qa_model, tmp_path):
    from service.answering.readers.factory import build_reader

    for backend in ("torch", "openvino"):
        settings = make_settings(tmp_path, reader="transformers", reader_model=str(tiny_qa_model),
                                 reader_backend=backend)
        reader = build_reader(settings, None, None, None)  # type: ignore[arg-type]
        assert reader.model.backend == backend  # type: ignore[attr-defined]


def test_merge_passages_joins_overlapping_and_touching_chunks():
    def passage(doc: str, start: int, end: int) -> Passage:
        return Passage(doc_id=doc, title=doc, chunk_id=f"{doc}:{start}", text="x" * (end - start), start=start,
                       end=end, score=1.0)

    segments = merge_passages([passage("b", 100, 200), passage("a", 0, 50), passage("b", 180, 300),
                               passage("b", 301, 400), passage("b", 900, 950)])
    assert [(s.doc_id, s.start, s.end) for s in segments] == [("b", 100, 400), ("b", 900, 950), ("a", 0, 50)]


@pytest.mark.integration
def test_hub_model_path_answers_with_exact_offsets(tmp_path, tiny_qa_model, settings_for, embedder, nlp, prompts):
    settings = settings_for(tmp_path / "data", reader="transformers", reader_model=str(tiny_qa_model),
                            abstain_below=0.0)
    service = build_service(settings, embedder, nlp, prompts)
    assert service.reader.name == f"transformers:{tiny_qa_model}"
    for question in ("Who doubted the pipeline claim?", "Who is the mayor of Vellmont?"):
        r = service.ask(question)
        assert not r.abstained and r.answer
        doc = service.get_document(r.citations[0].doc_id)
        assert doc.text[r.answer_start:r.answer_end] == r.answer
        assert r.citations[0].start <= r.answer_start < r.answer_end <= r.citations[0].end
        for c in r.citations:
            assert service.get_document(c.doc_id).text[c.start:c.end] == c.quote


def test_reader_settings_errors_name_the_problem(tmp_path, embedder, nlp, prompts):
    from service.answering.readers.factory import build_reader

    with pytest.raises(ModelUnavailable, match="NEWSROOM_QA_READER_MODEL"):
        build_reader(make_settings(tmp_path, reader="transformers"), embedder, nlp, prompts)
    with pytest.raises(ModelUnavailable, match="cannot load the reader model"):
        build_reader(make_settings(tmp_path, reader="transformers", reader_model=str(tmp_path / "nowhere")),
                     embedder, nlp, prompts)


# --- training ----------------------------------------------------------------------------------------------
def _examples() -> list[SquadExample]:
    start = CONTEXT.index("Tomas")
    return [SquadExample(id=f"e{i}", dataset="t", question=q, context=CONTEXT, answers=a, is_impossible=not a)
            for i, (q, a) in enumerate([("Who studied the estuary?", [(start, "Tomas Lindqvist")]),
                                        ("Who doubted the claim?", [(0, "The Marren Water Trust")]),
                                        ("What is the capital of Peru?", [])] * 4)]


def test_training_checkpoints_resumes_and_exports(tmp_path, tiny_qa_model):
    config = TrainConfig(base_model=str(tiny_qa_model), max_length=64, stride=16, batch_size=4, epochs=2,
                         checkpoint_every=1, threads=1, bf16=False)
    seen: list[int] = []

    def interrupt_at_3(step: int, total: int, loss: float) -> None:
        seen.append(step)
        assert loss == loss  # not NaN
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_reader(_examples(), config, tmp_path / "run", interrupt_at_3)
    first_total = len(seen)
    train_reader(_examples(), config, tmp_path / "run", lambda s, t, loss: seen.append(s))
    # the resumed run starts after the last checkpoint (step 2: step 3 was interrupted before its checkpoint)
    assert seen[:first_total] == [1, 2, 3] and seen[first_total] == 3 and seen[-1] == 6
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6
    exported = export_model(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    weights = exported / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as fh:
        assert all(fh.get_tensor(k).dtype == torch.float16 for k in fh.keys())  # noqa: SIM118
    assert SpanModel(exported).predict("Who studied the estuary?", [CONTEXT])


def test_calibration_is_monotonic_and_threshold_maximises_f1():
    rng = random.Random(3)
    margins = [rng.uniform(-8, 8) for _ in range(400)]
    right = [rng.random() < 1 / (1 + pow(2.718, -m)) for m in margins]
    calibration = fit_calibration(margins, right, [1.0 if r else 0.0 for r in right], [True] * 400, "synthetic")
    assert calibration.slope > 0
    assert calibration.confidence(-5) < calibration.confidence(0) < calibration.confidence(5)
    assert abs(calibration.confidence(0) - 0.5) < 0.15  # the data were drawn from sigmoid(margin)
    assert 0.0 <= calibration.threshold <= 0.95
    assert Calibration.load(Path("/nonexistent")).fitted_on.startswith("uncalibrated")



def test_open_calibration_is_refit_from_the_gold_one_and_preferred_where_it_exists(tmp_path):
    from service.answering.readers.calibration import refit_open

    base = Calibration(slope=0.25, intercept=-1.0, threshold=0.3, fitted_on="gold")
    base.save(tmp_path)
    assert Calibration.load(tmp_path, "open").fitted_on == "gold"  # none refitted yet: the gold one
    rng = random.Random(5)
    # Over an archive the gold calibration is overconfident: answers it gives 0.6 are right about a third of the time.
    margins = [rng.uniform(-10, 20) for _ in range(600)]
    right = [rng.random() < 1 / (1 + pow(2.718, -(0.25 * m - 3.0))) for m in margins]
    confidences: list[float | None] = [base.confidence(m) for m in margins]
    confidences[:50] = [None] * 50  # abstained for another reason: never answered, whatever the threshold
    refit = refit_open(base, confidences, [1.0 if r else 0.0 for r in right], [True] * len(margins), "open")
    assert refit.confidence(10) < base.confidence(10)  # less sure than the gold calibration, as the data say
    assert abs(refit.confidence(12) - 0.5) < 0.15  # sigmoid(0.25 * m - 3) is 0.5 at m = 12
    assert refit.confidence(-5) < refit.confidence(5) < refit.confidence(15)
    assert 0.0 <= refit.threshold <= 0.95
    refit.save(tmp_path, "open")
    assert Calibration.load(tmp_path, "open").fitted_on == "open"
    assert Calibration.load(tmp_path, "gold").fitted_on == "gold"


def test_open_calibration_weighs_the_answers_article_rank_and_keeps_abstaining_on_unanswerable_questions():
    """Over an archive an answer is right less often than its margin says when articles retrieved above its own offer
    answers of their own: the refit learns how much less, counts only the articles above whose span reaches the
    margin it answers at (silent ones do not count), and its threshold abstains on at least as many unanswerable
    questions as without the rank."""
    from service.answering.readers.calibration import refit_open

    base = Calibration(slope=0.25, intercept=-1.0, threshold=0.3, fitted_on="gold")
    rng = random.Random(11)
    margins = [rng.uniform(-10, 20) for _ in range(1500)]
    above_margins = [[rng.uniform(-10, 20) for _ in range(rng.choice([0, 0, 1, 2, 3, 4]))] for _ in margins]
    answering = [sum(a >= 5.0 for a in above) for above in above_margins]
    answerable = [rng.random() < 0.7 for _ in margins]
    # right as sigmoid(0.25 * m - 2) with no answering article above, 1.5 logits less per log(1 + their number)
    right = [a and rng.random() < 1 / (1 + math.exp(-(0.25 * m - 2.0 - 1.5 * math.log1p(n))))
             for m, n, a in zip(margins, answering, answerable, strict=True)]
    f1s = [1.0 if r else 0.0 for r in right]
    confidences: list[float | None] = [base.confidence(m) for m in margins]
    above = [[base.confidence(a) for a in above] for above in above_margins]
    plain = refit_open(base, confidences, f1s, answerable, "open")
    ranked = refit_open(base, confidences, f1s, answerable, "open", above=above)
    # articles above count from the margin the plain refit answers at
    assert plain.rank_weight == 0.0 and ranked.rank_margin == pytest.approx(plain.margin(plain.threshold), abs=1e-3)
    assert 0.6 < ranked.rank_weight < 2.5  # drawn with 1.5; answers to unanswerable questions pull it down
    shuffled = above[:]
    rng.shuffle(shuffled)  # the same articles above, no longer tied to being right: nothing to learn
    assert refit_open(base, confidences, f1s, answerable, "open", above=shuffled).rank_weight < 0.15
    assert ranked.confidence(10, rank=3) < ranked.confidence(10, rank=1) < ranked.confidence(10, rank=0)
    assert ranked.confidence(10, rank=0) > plain.confidence(10)  # answers with none above, held down before
    # at run time the reader's confidences are the calibration's own, the rank not weighed
    silent, answers = ranked.confidence(ranked.rank_margin - 1), ranked.confidence(ranked.rank_margin + 1)
    assert ranked.rank_of([silent, silent]) == 0 and ranked.rank_of([answers, silent, answers]) == 2

    def abstained(c: Calibration, rank_of: list[int]) -> float:
        held = [c.confidence(m, r) < c.threshold for m, r, a in zip(margins, rank_of, answerable, strict=True) if not a]
        return sum(held) / len(held)

    ranks = [sum(base.margin(c) >= ranked.rank_margin for c in a) for a in above]
    assert abstained(ranked, ranks) >= abstained(plain, [0] * len(margins)) - 1e-9


# --- grounding, sources that differ, speakers -------------------------------------------------------------------------
def _tune_paragraphs(dataset: str, count: int) -> list[dict[str, object]]:
    """SQuAD paragraphs of fictional towns that fall in ``dataset``'s tune split, each with a question its text
    answers and one it does not."""
    people = ["Ilse Varga", "Tomas Berglund", "Priya Anand", "Kofi Mensah", "Lena Sorvik", "Marco Ruiz",
              "Aiko Tanabe", "Nils Ekdahl", "Rosa Quint", "Omar Haddad", "Vera Lind", "Jonas Falk"]
    paragraphs: list[dict[str, object]] = []
    for i in range(400):
        mayor, town = people[i % len(people)], f"Brackwater-{i}"
        context = (f"{mayor}, the mayor of {town}, opened the new harbour bridge in March. The council said the "
                   f"bridge cost 4 million euros and would carry {100 + i} lorries a day.")
        if split_of(dataset, context) != "tune":
            continue
        paragraphs.append({"context": context, "qas": [
            {"id": f"a{i}", "question": f"Who opened the harbour bridge of {town}?", "is_impossible": False,
             "answers": [{"text": mayor, "answer_start": 0}]},
            {"id": f"u{i}", "question": f"Who designed the lighthouse of {town}?", "is_impossible": True,
             "answers": []}]})
        if len(paragraphs) == count:
            return paragraphs
    raise AssertionError("too few tune paragraphs")


@pytest.mark.integration
def test_calibrate_reader_open_refits_over_an_archive_and_the_service_loads_it(tmp_path, embedder, nlp, prompts):
    """``calibrate-reader --open`` answers the tune questions over an archive of every paragraph and writes
    calibration-open.json beside the model (and into its model card), leaving the gold calibration alone; the
    package ships one and the reader loads it by default."""
    import shutil

    from click.testing import CliRunner

    from service.answering.readers.transformer import BUNDLED_READER
    from service.cli import cli

    model = shutil.copytree(BUNDLED_READER, tmp_path / "reader")
    (model / "calibration-open.json").unlink()
    gold = (model / "calibration.json").read_text(encoding="utf-8")
    data = tmp_path / "towns-v2.0.json"
    data.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": "Towns", "paragraphs": _tune_paragraphs("squad2", 8)}]}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["calibrate-reader", str(data), "--model", str(model), "--open"])
    assert result.exit_code == 0, result.output
    assert "open-setting calibration" in result.output and "article rank weight" in result.output
    ranked = Calibration.load(model, "open")  # by default the rank among articles offering an answer is fitted
    result = CliRunner().invoke(cli, ["calibrate-reader", str(data), "--model", str(model), "--open",
                                      "--without-rank"])
    assert result.exit_code == 0, result.output
    refit = Calibration.load(model, "open")
    assert refit.fitted_on == "open setting, tune split of towns-v2.0.json (16 q)"
    assert refit.slope > 0 and 0.0 <= refit.threshold <= 0.95
    assert (model / "calibration.json").read_text(encoding="utf-8") == gold  # the gold one untouched
    assert refit.rank_weight == 0.0 and refit.rank_margin == 0.0  # --without-rank: the margin alone
    # articles above count from the margin at which the margin alone answers
    assert ranked.rank_margin == pytest.approx(refit.margin(refit.threshold), abs=1e-3)
    card = (model / "README.md").read_text(encoding="utf-8")  # the model card states the refit
    assert f"sigmoid({refit.slope:.4f} * margin + {refit.intercept:.4f}); abstain below {refit.threshold} (" in card
    for flag in ("--with-rank", "--without-rank"):
        refused = CliRunner().invoke(cli, ["calibrate-reader", str(data), "--model", str(model), flag])
        assert refused.exit_code == 2 and "give --open too" in refused.output
    shipped = Calibration.load(BUNDLED_READER, "open")
    assert shipped.fitted_on.startswith("open setting") and shipped != Calibration.load(BUNDLED_READER, "gold")
    reader = build_service(make_settings(tmp_path / "data", reader="trained"), embedder, nlp, prompts).reader
    assert reader.calibration == shipped  # type: ignore[attr-defined]  # READER_CALIBRATION=open, the default


@pytest.mark.integration
def test_the_reader_weighs_the_answers_article_rank_when_its_calibration_does(tmp_path, embedder, nlp, prompts):
    """With a rank weight (``calibrate-reader --open --with-rank``) the same answer is less sure when an article
    retrieved above its own offers an answer (a span reaching ``rank_margin``) than when its article comes first,
    and as sure when the article above offers none; without a weight the rank changes nothing. The best guess keeps
    the confidence that it is what its article says (as an alternative for "sources differ" it is weighed as such),
    and an answer read from what a named person said is not weighed by its article's rank: the speaker chose the
    sentences."""
    import copy

    service = build_service(make_settings(tmp_path / "data", seeds_dir=tmp_path / "none", reader="trained"),
                            embedder, nlp, prompts)
    service.add_documents([
        DocumentIn(id="dam", title="Dam opens", text="The new dam opened on Friday. Engineer Ada Lune led the work. "
                   '"The water level will rise slowly over the winter," Ada Lune said.'),
        DocumentIn(id="fair", title="Harvest fair", text="The harvest fair opened on Saturday with apples and pears.")])
    snap = service.store.snapshot()

    def whole(doc_id: str) -> Passage:
        doc = snap.document(doc_id)
        return Passage(doc_id=doc_id, title=doc.title, chunk_id=f"{doc_id}:all", text=doc.text, start=0,
                       end=len(doc.text), score=1.0)

    def weighing(rank_margin: float, weight: float = 2.0):  # type: ignore[no-untyped-def]
        reader = copy.copy(service.reader)  # the session's reader is shared: the weight goes on a copy
        reader.calibration = reader.calibration.model_copy(  # type: ignore[attr-defined]
            update={"rank_weight": weight, "rank_margin": rank_margin})
        return reader

    question = "Who led the work on the dam?"
    counted, silent_above = weighing(-1000.0), weighing(1000.0)  # every article above offers an answer / none does
    first = counted.run(question, [whole("dam"), whole("fair")], snap)
    second = counted.run(question, [whole("fair"), whole("dam")], snap)
    assert first.best_guess and second.best_guess and "Ada Lune" in second.best_guess.answer
    assert second.best_guess.doc_id == "dam" and first.best_guess.answer == second.best_guess.answer
    assert second.confidence < first.confidence
    assert first.ranked_above == [] and second.ranked_above is not None and len(second.ranked_above) == 1
    assert second.best_guess.confidence == pytest.approx(first.confidence)
    assert silent_above.run(question, [whole("fair"), whole("dam")], snap).confidence == pytest.approx(
        first.confidence)
    assert weighing(-1000.0, weight=0.0).run(question, [whole("fair"), whole("dam")], snap).confidence == \
        pytest.approx(first.confidence)
    said = "What did Ada Lune say about the water level?"
    spoken_first = counted.run(said, [whole("dam"), whole("fair")], snap)
    spoken_second = counted.run(said, [whole("fair"), whole("dam")], snap)
    assert spoken_second.best_guess and "water level" in spoken_second.best_guess.answer
    assert spoken_second.ranked_above is None and spoken_second.confidence == pytest.approx(spoken_first.confidence)


def test_differ_compares_numbers_names_and_ignores_containment():
    assert differ("between 5,000 and 11,000", "between 5,000 and 13,000")
    assert differ("Tomas Lindqvist", "Clara Voss")
    assert not differ("Amnesty International", "Amnesty")
    assert not differ("40 barrels", "40 barrels a week")
    assert not differ("the pipe", "a pipeline")
    assert not differ("March 2019", "Clara Voss")
    assert answer_kind("in March") == "name" or answer_kind("in March") == "other"


@pytest.mark.integration
def test_grounding_finds_names_the_article_does_not_mention(nlp):
    from service.answering.grounding import Grounding

    grounding = Grounding(nlp)
    article = "Ostrava Point is the capital of the Marren province. Inmates were held at Saydnaya prison."
    assert grounding.missing("What is the capital of France?", article) == ["france"]
    assert grounding.missing("What is the capital of the Marren province?", article) == []
    assert grounding.missing("Who ran Sednaya prison?", article) == []  # a transliteration variant
    assert grounding.missing("What is the capital of the Maren province?", article) == []  # a typo
    assert grounding.missing("How many moons does Jupiter have?", article) == ["jupiter"]
    assert grounding.missing("What is the capital of Peru?", article + " The pier is new.") == ["peru"]


@pytest.mark.integration
def test_speaker_of_a_quote_and_of_a_pronoun(nlp, service):
    from service.answering.attribution import Attributor, load_attribution_rules
    from service.settings import REPO_ROOT

    attributor = Attributor(nlp, load_attribution_rules(REPO_ROOT / "prompts" / "attribution.toml"))
    assert attributor.asks_for_speaker("Who said there is still a great deal of testing to be done?")
    assert attributor.asks_for_speaker("According to whom was the pipe new?")
    assert not attributor.asks_for_speaker("Who doubted the pipeline claim?")
    # "which <who> said": a speaker question too; "which <thing> has X called ...": the thing, not the speaker
    assert attributor.asks_for_speaker("Which harbour official said the water was safe?")
    assert attributor.asks_for_speaker("Which of the engineers warned of delays?")
    assert not attributor.asks_for_speaker("Which deal has the minister called a mistake?")
    assert not attributor.asks_for_speaker("Which city is called the Big Apple?")
    snap = service.store.snapshot()
    for doc_id, needle, speaker in [("001_harbour-report", "reached a new low", "Clara Voss"),
                                    ("002_harbour-doubts", "great deal of testing", "Lindqvist"),
                                    ("002_harbour-doubts", "pay for new water samples", "Peter Amsel")]:
        text = snap.document(doc_id).text
        sentence = next(s for s in snap.sentences(doc_id) if needle in text[s.start:s.end])
        found = attributor.speaker(text, snap.sentences(doc_id), sentence.start, sentence.end)
        assert found is not None and text[found[0]:found[1]] == speaker


@pytest.mark.integration
def test_who_said_questions_answer_with_the_speaker(service):
    r = service.ask("Who said there is still a great deal of testing to be done?")
    assert not r.abstained and r.answer == "Lindqvist"
    doc = service.get_document(r.citations[0].doc_id)
    assert doc.text[r.answer_start:r.answer_end] == r.answer and r.answer in r.supporting_sentence


@pytest.mark.integration
def test_sources_that_differ_are_both_cited(tmp_path, settings_for, embedder, nlp, prompts):
    service = build_service(settings_for(tmp_path / "data", seeds_dir=tmp_path / "none", reader="trained"),
                            embedder, nlp, prompts)
    service.add_documents([
        DocumentIn(id="a", title="Trust counts barrels", source="Marren Daily",
                   text="The Marren Water Trust said on Monday that 40 barrels of sludge were dumped every week."),
        DocumentIn(id="b", title="Guild disputes the count", source="Valley Post",
                   text="Fishermen in the valley have a different figure. According to their guild, 65 barrels of "
                        "sludge were dumped every week into the estuary near the pier."),
    ])
    r = service.ask("How many barrels of sludge were dumped every week?")
    assert not r.abstained and r.sources_differ
    answers = {r.answer, *(a.answer for a in r.alternatives)}
    assert any("40" in a for a in answers) and any("65" in a for a in answers)
    for alt in r.alternatives:
        c = alt.citation
        assert service.get_document(c.doc_id).text[c.start:c.end] == c.quote and alt.answer in c.quote
    agree = service.ask("Who said the barrels were dumped every week?")
    assert not agree.sources_differ


@pytest.mark.integration
def test_off_topic_questions_abstain(service):
    for question in ("What is the capital of Peru?", "How many moons does Jupiter have?",
                     "Who won the 1998 football world cup?"):
        r = service.ask(question)
        assert r.abstained and r.answer is None and r.citations == []



@pytest.fixture(scope="module")
def lock_archive(tmp_path_factory, embedder, nlp, prompts):  # type: ignore[no-untyped-def]
    """Articles about other things, and one where a date stands nearer the question's words than the person."""

    tmp = tmp_path_factory.mktemp("lock")
    service = build_service(make_settings(tmp / "data", seeds_dir=tmp / "none"), embedder, nlp, prompts)
    service.add_documents([
        DocumentIn(id="lock", title="New lock opens on the Marren canal", source="Valley Post",
                   text="The new lock on the Marren canal was opened by engineer Marta Lindqvist on 4 March 2021, "
                        "after three years of building. Barges can now pass the weir at any tide."),
        DocumentIn(id="bakery", title="Bakery wins regional prize", source="Valley Post",
                   text="A family bakery in Ostrava Point won the regional bread prize on Saturday. The judges "
                        "praised its rye loaf, baked to a recipe from 1921."),
        DocumentIn(id="choir", title="Choir tours the coast", source="Marren Daily",
                   text="The Marren youth choir will sing in six harbour towns this summer. Tickets go on sale in "
                        "May, and the last concert is in the old fish market."),
    ])
    return service


@pytest.mark.integration
def test_a_who_question_is_answered_with_the_person_not_the_nearer_date(lock_archive):
    r = lock_archive.ask("Who opened the new lock on the Marren canal?")
    assert not r.abstained and r.answer is not None and "Lindqvist" in r.answer
    assert "2021" not in r.answer and r.citations[0].doc_id == "lock"


@pytest.mark.integration
@pytest.mark.parametrize("question", ["Who designed the harbour crane in Ostrava Point?",
                                      "How many tickets did the choir sell in March?",
                                      "What did the mayor say about the new bridge?"])
def test_an_archive_that_does_not_answer_abstains(lock_archive, question):
    r = lock_archive.ask(question)
    assert r.abstained and r.answer is None and r.passages  # with the nearest passages


# --- the shipped reader and the eval command ---------------------------------------------------------------
def test_trained_reader_ships_with_the_package_and_loads_offline(tmp_path):
    import os
    import subprocess
    import sys

    from service.answering.readers.transformer import BUNDLED_READER

    weights = BUNDLED_READER / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 50 * 2**20
    assert (BUNDLED_READER / "calibration.json").is_file()
    assert "<!-- results -->" in (BUNDLED_READER / "README.md").read_text(encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "NEWSROOM_QA_DATA_DIR": str(tmp_path / "data")}
    code = ("from service.settings import Settings; from service.answering.readers.factory import build_reader; "
            "r = build_reader(Settings(), None, None, None); "
            "print(r.name, r.abstain_below, r.model.predict('Who doubted it?', ['Lindqvist doubted it.'])[0].start)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "minilm-newsroom-reader" in out.stdout


def test_windows_are_padded_to_few_shapes_and_spans_do_not_move(tiny_qa_model):
    from service.answering.readers import span_model

    model = SpanModel(tiny_qa_model, max_length=64, stride=16)
    shapes: list[tuple[int, ...]] = []
    forward = model.model.forward
    model.model.forward = lambda **kw: shapes.append(tuple(kw["input_ids"].shape)) or forward(**kw)
    contexts = [CONTEXT, CONTEXT[:70], "Lindqvist doubted it."]
    padded = model.predict("Who doubted the pipeline claim?", contexts, top_n=5)
    assert shapes and all(length % span_model.PAD_TO_MULTIPLE == 0 for _, length in shapes)
    span_model.PAD_TO_MULTIPLE = None  # type: ignore[assignment]
    try:
        tight = model.predict("Who doubted the pipeline claim?", contexts, top_n=5)
    finally:
        span_model.PAD_TO_MULTIPLE = 32
    assert shapes[-1][1] % 32 != 0  # without it, the longest window sets the shape
    assert [(p.context_index, p.start, p.end) for p in padded] == [(p.context_index, p.start, p.end) for p in tight]


def test_reader_weights_held_in_bf16_give_the_same_logits_in_half_the_memory():
    from transformers import AutoModelForQuestionAnswering

    from service.answering.readers.span_model import hold_in_bf16
    from service.answering.readers.transformer import BUNDLED_READER

    compact = SpanModel(BUNDLED_READER, precision="bf16")
    reference = AutoModelForQuestionAnswering.from_pretrained(str(BUNDLED_READER), dtype=torch.float32).eval()

    def size(model: torch.nn.Module) -> int:
        return sum(p.numel() * p.element_size() for p in model.parameters())

    assert size(compact.model) < 0.55 * size(reference)
    enc = compact.tokenizer(["Who doubted the pipeline claim?"] * 2, [CONTEXT, CONTEXT[::-1]], padding=True,
                            return_tensors="pt")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = reference(**enc), compact.model(**enc)
    assert torch.equal(want.start_logits, got.start_logits) and torch.equal(want.end_logits, got.end_logits)
    fp32_table = torch.nn.Embedding(10, 4)  # values bf16 cannot hold exactly: the table stays fp32
    hold_in_bf16(fp32_table)
    assert fp32_table.weight.dtype == torch.float32


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["--gold-context", "--open"])
def test_eval_reader_command_writes_report_and_plot(tmp_path, mode):
    from click.testing import CliRunner

    from service.cli import cli

    data = squad_file(tmp_path / "mini-v2.0.json")
    report = tmp_path / "out" / "reader.json"
    result = CliRunner().invoke(cli, ["eval", "reader", str(data), mode, "--split", "heldout", "--split", "tune",
                                      "--split", "train", "--report", str(report)])
    assert result.exit_code == 0, result.output
    body = json.loads(report.read_text())
    figures = body["figures"]
    assert figures["questions"] == 3
    assert {"exact", "f1", "HasAns_f1", "NoAns_accuracy", "sentence_accuracy", "reader_ms_p50",
            "expected_calibration_error", "reliability"} <= set(figures)
    assert 0.0 <= figures["f1"] <= 100.0
    assert report.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "f1" in result.output
    if mode == "--open":
        assert "document_accuracy" in figures
    answered = [q for q in body["questions"] if q["prediction"]]
    assert answered and all(isinstance(q["doc_rank"], int) and q["doc_rank"] >= 0 for q in answered)
    if mode == "--gold-context":
        assert {q["doc_rank"] for q in answered} == {0}  # one paragraph read: its article is the first


def test_eval_reader_refuses_a_file_that_is_not_squad(tmp_path):
    from click.testing import CliRunner

    from service.cli import cli

    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "reader", str(bad)])
    assert result.exit_code == 1 and "not a SQuAD-format JSON file" in result.output


def test_same_claim_needs_the_same_report_not_two_names():
    from service.answering.disagreement import same_claim

    assert same_claim("In March, the Fishermen's Guild said catches fell by 40 percent between 2019 and 2021.",
                      "The Fishermen's Guild reported in March that catches fell 55 percent from 2019 to 2021.")
    assert not same_claim("Lindqvist said he had no information about the pipe.",
                          "Voss, the head of the office, said the pipe carried waste and that she had information.")


def test_holds_accepted_judges_an_answer_as_the_seed_dev_set_does() -> None:
    from service.answering.readers.squad_metrics import holds_accepted

    assert holds_accepted("Saydnaya military prison", ["Saydnaya", "Sednaya"])
    assert holds_accepted("Stuart Jones", ["Jones", "Stuart Jones"])
    assert not holds_accepted("the prison north of Damascus called Saydnaya", ["Saydnaya"])  # six other words
    assert holds_accepted("the prison north of Damascus called Saydnaya", ["Saydnaya"], extra_words=6)
    assert not holds_accepted("Turkey", ["Kazakhstan"])
    assert not holds_accepted(None, ["Kazakhstan"])  # abstained on an answerable question
    assert holds_accepted(None, []) and not holds_accepted("Assad", [])  # the seeds do not answer it
