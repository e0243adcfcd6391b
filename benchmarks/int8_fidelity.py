"""Would keeping some of the int8 embedding model's products in floating point be worth their speed?

    python benchmarks/int8_fidelity.py [VARIANT ...]     # default, ffn-out, ffn-out:0, ffn-out:0,1,2, last-layer

Quantizes the bulk engine's model (``index.embedding.batch_encoder``, OpenVINO + NNCF, as shipped) on 300 BBC
chunks, with
the named matrix products left out of quantization (NNCF's ignored scope), and prints each variant's cosine to the
fp32 PyTorch vectors on 600 other BBC chunks (mean, 1st percentile, worst) and its throughput. Variants:
``default`` (what ships), ``ffn-out[:LAYERS]`` (the feed-forward output products of those layers, all if none
named), ``last-layer`` (every product of the last layer). Give a variant twice to interleave rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bbc_chunks(data: Path) -> list[str]:
    out: list[str] = []
    with (data / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            out += [text[i:i + 700] for i in range(0, len(text), 700)]
    return out


def ignored(graph: Any, variant: str) -> list[str]:
    """The friendly names of the products ``variant`` keeps in floating point."""
    products = [op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "MatMul"]
    if variant == "last-layer":
        return [p for p in products if "/layer.5/" in p]
    if variant.startswith("ffn-out"):
        layers = variant.split(":")[1].split(",") if ":" in variant else [str(i) for i in range(12)]
        return [p for p in products if p.endswith("/output/dense/MatMul") and "/attention/" not in p
                and any(f"/layer.{n}/" in p for n in layers)]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=["default", "ffn-out:0", "ffn-out"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/newsroom-qa-int8-fidelity"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import nncf
    from sentence_transformers import SentenceTransformer

    import index.embedding.batch_encoder as be
    from index.embedding.embedder import bundled_model_path
    from index.embedding.query_encoder import OnnxQueryEncoder

    texts = bbc_chunks(args.data)
    calibration, held = texts[:300], texts[1000:1600]
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    reference = model.encode(held, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
    onnx = OnnxQueryEncoder(model, str(bundled_model_path()), args.cache, threads=2)

    def quantizer(variant: str) -> Any:
        def quantize(self: Any, graph: Any, calibration_texts: list[str]) -> Any:
            feeds = [{n: b[n] for n in self.input_names}
                     for _, b in self._batches(calibration_texts, be.CALIBRATION_BATCH)]
            names = ignored(graph, variant)
            scope = {"ignored_scope": nncf.IgnoredScope(names=names)} if names else {}
            with contextlib.redirect_stdout(sys.stderr):
                return nncf.quantize(graph, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                     subset_size=len(feeds), **scope)
        return quantize

    print("| variant | products kept in fp | cosine mean | 1st percentile | worst | chunks/s |")
    print("|---|---|---|---|---|---|")
    for variant in args.variants:
        be.OpenVinoBatchEncoder._quantize = quantizer(variant)  # type: ignore[method-assign]
        encoder = be.OpenVinoBatchEncoder(model, onnx, "fp32", 2, be.REQUEST_BATCH, be.REQUEST_PAD_TO_MULTIPLE,
                                          calibration=calibration, int8_cache=None)
        cosine = (encoder.encode(held) * reference).sum(axis=1)
        began = time.perf_counter()
        encoder.encode(held[:300])
        speed = 300 / (time.perf_counter() - began)
        kept = len(ignored(encoder._core.read_model(str(onnx.path)), variant))
        print(f"| {variant} | {kept} | {cosine.mean():.5f} | {np.percentile(cosine, 1):.5f} | {cosine.min():.5f} "
              f"| {speed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
