"""How close can embedding get to 4x the naive fp32 baseline on this CPU? Matrix-product peak against the model.

    python benchmarks/roofline.py [--chunks 384] [--rounds 3]

Measures, in one process on the same real BBC chunks: the matrix-product throughput this CPU reaches in fp32 and
bf16 on the model's own shapes (oneDNN through PyTorch), the naive fp32 ``SentenceTransformer.encode`` and the
bf16 one, and where the bf16 forward pass spends its time (matrix products, attention, everything else, from
PyTorch's profiler). It then prints the best bf16 could do if every matrix product ran at the measured peak and the
rest cost what it costs now, and the budget the non-matrix work would have to fit in for 4x. The README's
"Performance" section quotes one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HIDDEN, FFN, LAYERS = 384, 1536, 6  # all-MiniLM-L6-v2
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul")
ATTENTION_OPS = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_softmax")


def linear_flops(tokens: int) -> int:
    """Multiply-adds x 2 of one layer stack's dense products (Q, K, V, output, two FFN) for one sequence."""
    return LAYERS * 2 * tokens * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)


def median_rate(work: Callable[[], object], items: int, rounds: int) -> float:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        rates.append(items / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--chunks", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (args.data / "bbc_news" / "bbc_news.jsonl").is_file():
        sys.exit(f"no BBC articles at {args.data}/bbc_news: give --data DIR (the shared data folder)")
    warnings.filterwarnings("ignore")
    import torch
    from sentence_transformers import SentenceTransformer
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.quantization import chunks  # the same real chunks as the int8 comparison
    from index.embedding.embedder import bundled_model_path

    texts = chunks(args.data, args.chunks)
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
    flops_per_chunk = sum(linear_flops(n) for n in lengths) / len(texts)
    print(f"{len(texts)} chunks, {statistics.mean(lengths):.0f} tokens on average, "
          f"{flops_per_chunk / 1e9:.2f} GFLOP of dense products a chunk; {torch.get_num_threads()} threads")

    for dtype in (torch.float32, torch.bfloat16):
        rates = []
        for m, k, n in ((4096, HIDDEN, FFN), (4096, FFN, HIDDEN), (4096, HIDDEN, HIDDEN)):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            torch.mm(a, b)
            rates.append(median_rate(lambda a=a, b=b: [torch.mm(a, b) for _ in range(10)], 10, args.rounds)
                         * 2 * m * k * n / 1e9)
        print(f"matrix products {str(dtype).removeprefix('torch.'):8s} {statistics.mean(rates):6.0f} GFLOP/s "
              f"(the model's shapes, 4,096 rows)")
        if dtype == torch.bfloat16:
            bf16_peak = statistics.mean(rates)

    def encode() -> object:
        return model.encode(texts, batch_size=32, normalize_embeddings=True)

    encode()
    naive = median_rate(encode, len(texts), args.rounds)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encode()
        bf16 = median_rate(encode, len(texts), args.rounds)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            encode()
            wall = time.perf_counter() - started
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / total
    attention = sum(e.self_cpu_time_total for e in events if e.key in ATTENTION_OPS) / total
    print(f"naive fp32 {naive:6.1f} chunks/s ({naive * flops_per_chunk / 1e9:.0f} GFLOP/s); "
          f"bf16 {bf16:6.1f} chunks/s, {bf16 / naive:.2f}x ({bf16 * flops_per_chunk / 1e9:.0f} GFLOP/s)")
    print(f"bf16 forward pass: matrix products {matmul:.0%}, attention {attention:.0%}, "
          f"everything else {1 - matmul - attention:.0%} of its time")
    per_chunk = wall / len(texts)
    rest = per_chunk * (1 - matmul)
    at_peak = flops_per_chunk / (bf16_peak * 1e9)
    target = 1 / (4 * naive)
    print(f"a chunk now: {per_chunk * 1e3:.1f} ms, of which {rest * 1e3:.1f} ms outside matrix products")
    print(f"matrix products at the measured peak: {at_peak * 1e3:.1f} ms a chunk; with the rest as it is: "
          f"at best {1 / (at_peak + rest):.0f} chunks/s = {1 / (at_peak + rest) / naive:.2f}x naive")
    print(f"4x naive = {4 * naive:.0f} chunks/s = {target * 1e3:.1f} ms a chunk: the work outside matrix products "
          f"would have to fit in {max(target - at_peak, 0) * 1e3:.1f} ms "
          f"({rest / max(target - at_peak, 1e-9):.1f}x faster than now)")


if __name__ == "__main__":
    main()
