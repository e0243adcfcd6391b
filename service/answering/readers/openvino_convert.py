"""Convert a local QA model to OpenVINO into a directory, in a process of its own (``openvino_logits``
runs it): ``python -m service.answering.readers.openvino_convert MODEL_DIR TARGET INPUT_NAME...``.

The converter's memory (tracing, the PyTorch frontend) stays with this process and is returned when it exits,
instead of staying in the server for its whole life.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Convert ``argv[0]`` into ``argv[1]`` (written atomically) with the model inputs ``argv[2:]``; 0 on success."""
    if len(argv) < 3:
        print("usage: python -m service.answering.readers.openvino_convert MODEL_DIR TARGET INPUT_NAME...",
              file=sys.stderr)
        return 2
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from index.embedding.openvino_common import save_model
    from service.answering.readers.openvino_logits import ReaderEngineUnavailable, convert, probe_inputs

    model_dir, target, names = Path(argv[0]), Path(argv[1]), argv[2:]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        graph = convert(model, names, probe_inputs(tokenizer))
    except (OSError, ValueError, ReaderEngineUnavailable) as exc:
        print(f"cannot convert {model_dir}: {exc}", file=sys.stderr)
        return 1
    return 0 if save_model(graph, target) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
