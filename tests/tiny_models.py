"""A tiny question-answering model for tests of the reader's plumbing (no quality): a randomly initialised one-layer
BERT with MiniLM's vocabulary, saved like a real model directory."""

from __future__ import annotations

from pathlib import Path

import torch

from index.embedding.embedder import bundled_model_path


def save_tiny_qa_model(path: Path, seed: int = 0) -> Path:
    """Write the tiny model and its tokenizer to ``path``."""
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertForQuestionAnswering(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
