"""Fine-tune a span reader: a transformer encoder with a start/end head, trained on SQuAD-format data.

Why this shape: it is the standard extractive-QA recipe (BERT-style start/end logits, the [CLS] position as the
no-answer span, SQuAD 2.0 style), so the result is an ordinary Hugging Face question-answering model that the
``transformers`` reader loads like any hub model. Training runs on CPU with bf16 autocast (AMX makes it practical),
checkpoints atomically every few steps and resumes from the last checkpoint after an interruption.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from service.answering.readers.squad_data import SquadExample

__all__ = ["Feature", "TrainConfig", "export_model", "featurize", "train_reader"]


class TrainConfig(BaseModel):
    """Everything that decides a training run (saved with the checkpoint, so a resume uses the same values)."""

    base_model: str
    max_length: int = 256
    stride: int = 96
    batch_size: int = 32
    epochs: float = 2.0
    learning_rate: float = 1e-4
    warmup: float = 0.1
    weight_decay: float = 0.01
    negative_window_keep: float = 0.3  # share of answer-less windows of answerable questions kept for training
    seed: int = 13
    checkpoint_every: int = 25  # optimizer steps
    threads: int = 2
    bf16: bool = True


@dataclass
class Feature:
    """One tokenized window of a (question, context) pair with its gold token span; (0, 0) means no answer here."""

    input_ids: list[int]
    token_type_ids: list[int]
    start: int
    end: int


def _answer_span(example: SquadExample) -> tuple[int, int] | None:
    """Character span of the first gold answer, repairing offsets that do not point at the text."""
    if example.is_impossible or not example.answers:
        return None
    start, text = example.answers[0]
    text = text.strip()
    if example.context[start:start + len(text)] != text:
        found = example.context.find(text)
        if found < 0:
            return None
        start = found
    return start, start + len(text)


def featurize(examples: Sequence[SquadExample], tokenizer: Any, max_length: int, stride: int,
              negative_window_keep: float, rng: random.Random) -> list[Feature]:
    """Overlapping windows with start/end token labels, as in the standard SQuAD preprocessing."""
    features: list[Feature] = []
    for example in examples:
        span = _answer_span(example)
        if span is None and not example.is_impossible:
            continue  # an answer that is not in its context cannot be learned
        enc = tokenizer(example.question, example.context, truncation="only_second", max_length=max_length,
                        stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                        return_token_type_ids=True)
        for i, input_ids in enumerate(enc["input_ids"]):
            offsets = enc["offset_mapping"][i]
            sequence_ids = enc.sequence_ids(i)
            ctx = [t for t, s in enumerate(sequence_ids) if s == 1]
            start_tok = end_tok = 0
            if span is not None:
                c0, c1 = span
                if offsets[ctx[0]][0] <= c0 and offsets[ctx[-1]][1] >= c1:
                    start_tok = next(t for t in ctx if offsets[t][1] > c0)
                    end_tok = next(t for t in reversed(ctx) if offsets[t][0] < c1)
                elif rng.random() > negative_window_keep:
                    continue
            features.append(Feature(list(input_ids), list(enc["token_type_ids"][i]), start_tok, end_tok))
    return features


def _collate(batch: Sequence[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f.input_ids) for f in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, f in enumerate(batch):
        n = len(f.input_ids)
        ids[row, :n] = torch.tensor(f.input_ids)
        types[row, :n] = torch.tensor(f.token_type_ids)
        mask[row, :n] = 1
    return {
        "input_ids": ids, "token_type_ids": types, "attention_mask": mask,
        "start_positions": torch.tensor([f.start for f in batch]),
        "end_positions": torch.tensor([f.end for f in batch]),
    }


def _batches(features: Sequence[Feature], batch_size: int, seed: int, epoch: int) -> list[list[Feature]]:
    """Length-bucketed batches in a fixed per-epoch order (cheap padding, reproducible on resume)."""
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(len(features)))
    rng.shuffle(order)
    # sort within chunks of 50 batches by length, then shuffle the batches: little padding, still random
    chunk = batch_size * 50
    batches: list[list[Feature]] = []
    for i in range(0, len(order), chunk):
        block = sorted(order[i:i + chunk], key=lambda j: len(features[j].input_ids))
        batches.extend([features[j] for j in block[k:k + batch_size]] for k in range(0, len(block), batch_size))
    rng.shuffle(batches)
    return batches


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_reader(examples: Sequence[SquadExample], config: TrainConfig, out_dir: Path,
                 progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Train (or resume) into ``out_dir``; returns the path of the last checkpoint.

    ``out_dir/checkpoint.pt`` holds model, optimizer and scheduler state and the step reached; it is replaced
    atomically, so a run killed at any moment resumes from the last complete checkpoint.
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, get_linear_schedule_with_warmup

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"
    resume = torch.load(checkpoint_path, weights_only=False) if checkpoint_path.exists() else None
    if resume is not None:
        config = TrainConfig.model_validate(resume["config"])  # a resume keeps the original settings

    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    # fp32 master weights even when the base is an exported fp16 reader (a second training stage)
    model = AutoModelForQuestionAnswering.from_pretrained(config.base_model, dtype=torch.float32)
    features = featurize(examples, tokenizer, config.max_length, config.stride, config.negative_window_keep,
                         random.Random(config.seed))
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    total_steps = max(1, int(steps_per_epoch * config.epochs))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup * total_steps), total_steps)
    step = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        step = int(resume["step"])
    (out_dir / "config.json").write_text(config.model_dump_json(indent=2), encoding="utf-8")

    def checkpoint() -> None:
        _save_atomic({"config": config.model_dump(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "step": step, "features": len(features)}, checkpoint_path)

    model.train()
    pad_id = tokenizer.pad_token_id or 0
    log = (out_dir / "train_log.jsonl").open("a", encoding="utf-8")
    started, losses = time.monotonic(), []
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        for batch in _batches(features, config.batch_size, config.seed, epoch)[offset:]:
            if step >= total_steps:
                break
            inputs = _collate(batch, pad_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, total_steps, losses[-1])
            if step % config.checkpoint_every == 0 or step == total_steps:
                checkpoint()
                log.write(json.dumps({"step": step, "epoch": step / steps_per_epoch,
                                      "loss": sum(losses) / len(losses), "lr": scheduler.get_last_lr()[0],
                                      "seconds": round(time.monotonic() - started, 1)}) + "\n")
                log.flush()
                losses = []
    log.close()
    return checkpoint_path


def export_model(checkpoint_path: Path, export_dir: Path, card: str | None = None, data: str = "") -> Path:
    """Write the trained reader as a plain fp16 Hugging Face QA model directory (small enough to ship).

    ``data`` describes the training questions for the model card.
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    state = torch.load(checkpoint_path, weights_only=False)
    config = TrainConfig.model_validate(state["config"])
    model = AutoModelForQuestionAnswering.from_pretrained(config.base_model, dtype=torch.float32)
    model.load_state_dict(state["model"])
    model = model.half()
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(config.base_model).save_pretrained(tmp)
    # The recipe of every stage: a base that was itself trained by us carries its own training.json.
    previous = Path(config.base_model) / "training.json"
    record: dict[str, Any] = {"config": config.model_dump(), "steps": state["step"], "data": data}
    if previous.is_file():
        record["previous"] = json.loads(previous.read_text(encoding="utf-8"))
    (tmp / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    if card is not None:
        (tmp / "README.md").write_text(card, encoding="utf-8")
    if export_dir.exists():
        import shutil
        shutil.rmtree(export_dir)
    os.replace(tmp, export_dir)
    return export_dir
