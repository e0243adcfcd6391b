"""Is int8 worth it for the embedding model on this CPU? Speed and cosine to fp32 of the int8 options.

    python benchmarks/quantization.py [--chunks 768]

Embeds the same real BBC chunks with: the fp32 model (baseline), PyTorch dynamic int8 (per-tensor and
per-channel weights), and ONNX Runtime (fp32, and dynamic int8 with per-channel weights). Prints chunks/s, the
ratio to fp32 and the cosine of each vector to its fp32 vector (mean and worst). The project ships the int8
options only if they are fast and faithful; see docs/performance.md for the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def chunks(data: Path, n: int) -> list[str]:
    out: list[str] = []
    with (data / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            out += [text[i:i + 700] for i in range(0, len(text), 700)]
            if len(out) >= n:
                break
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--chunks", type=int, default=768)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer
    from torch.ao.quantization import per_channel_dynamic_qconfig
    from torch.ao.quantization import quantize_dynamic as torch_quantize

    from index.embedding.embedder import bundled_model_path
    from index.embedding.query_encoder import OnnxQueryEncoder

    texts = chunks(args.data, args.chunks)
    path = str(bundled_model_path())
    model = SentenceTransformer(path, device="cpu")

    def run(name: str, encode: Callable[[list[str]], np.ndarray], base: np.ndarray | None) -> np.ndarray:
        encode(texts[:32])
        started = time.perf_counter()
        vectors = encode(texts)
        rate = len(texts) / (time.perf_counter() - started)
        if base is None:
            print(f"{name:38s} {rate:6.1f} chunks/s  1.00x", flush=True)
            run.base_rate = rate  # type: ignore[attr-defined]
        else:
            cos = (vectors * base).sum(axis=1)
            print(f"{name:38s} {rate:6.1f} chunks/s  {rate / run.base_rate:.2f}x  "  # type: ignore[attr-defined]
                  f"cosine mean {cos.mean():.4f} worst {cos.min():.4f}", flush=True)
        return vectors

    def st_encode(m: SentenceTransformer) -> Callable[[list[str]], np.ndarray]:
        return lambda t: m.encode(t, batch_size=32, normalize_embeddings=True)

    base = run("fp32 PyTorch (sentence-transformers)", st_encode(model), None)

    def bf16_encode(t: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encode(t, batch_size=32, normalize_embeddings=True)

    run("bf16 autocast PyTorch", bf16_encode, base)
    for name, spec in (("int8 PyTorch dynamic, per-tensor", {torch.nn.Linear}),
                       ("int8 PyTorch dynamic, per-channel", {torch.nn.Linear: per_channel_dynamic_qconfig})):
        quantized = SentenceTransformer(path, device="cpu")
        quantized[0].model = torch_quantize(quantized[0].model, spec, dtype=torch.qint8)  # type: ignore[arg-type]
        run(name, st_encode(quantized), base)

    with tempfile.TemporaryDirectory() as tmp:
        encoder = OnnxQueryEncoder(model, path, Path(tmp), threads=torch.get_num_threads())
        fp32_file = next(Path(tmp).glob("onnx/*.onnx"))
        int8_file = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=True)
        tokenizer = model.tokenizer
        for name, file in (("fp32 ONNX Runtime", fp32_file), ("int8 ONNX Runtime dynamic, per-channel", int8_file)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])

            def encode(batch_texts: list[str], session: ort.InferenceSession = session) -> np.ndarray:
                order = np.argsort([-len(t) for t in batch_texts])
                out = np.zeros((len(batch_texts), base.shape[1]), dtype=np.float32)
                for first in range(0, len(order), 32):
                    idx = order[first:first + 32]
                    enc = tokenizer([batch_texts[i] for i in idx], padding=True, truncation=True,
                                    max_length=256, return_tensors="np")
                    tokens = session.run(None, {n: enc[n].astype(np.int64) for n in encoder.input_names})[0]
                    mask = enc["attention_mask"][..., None].astype(np.float32)
                    pooled = (tokens * mask).sum(axis=1) / mask.sum(axis=1)
                    out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
                return out

            run(name, encode, base)


if __name__ == "__main__":
    main()
