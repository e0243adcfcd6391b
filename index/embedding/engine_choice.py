"""Which engine embeds bulk batches under ``batch_backend="auto"``: measured on the batch, not assumed.

What is fastest depends on the CPU more than on anything we can read off it. 600 news chunks of <= 800 characters,
texts/s, on three 2-core machines of this project:

- AMD EPYC (Zen 5, AVX-512 BF16 and VNNI): OpenVINO int8 ~2x PyTorch bf16, OpenVINO bf16 1.4x;
- Intel Xeon (AVX-512 BF16 and VNNI, no AMX): OpenVINO int8 64.7 against PyTorch fp32 39.7, OpenVINO fp32 35.9;
- AMD EPYC (Zen 3, AVX2 only, no VNNI): PyTorch fp32 16.5, OpenVINO fp32 19.1, OpenVINO int8 15.1, the slowest.

So int8 is quantized (a one-off ~50 s calibration, cached) only where the CPU has int8 dot-product instructions,
and then every engine that loads embeds the same few texts of the batch, in turns; the fastest embeds the rest.
int8 must win clearly, since its vectors move (cosine to fp32 ~0.99); the others give the same vectors (>= 0.9999).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

__all__ = ["ENGINE_SAMPLE", "INT8_MIN_SPEEDUP", "choose_batch_engine", "cpu_flags", "cpu_has_fast_int8", "flags_in",
           "int8_flags_in", "measure_speeds"]

logger = logging.getLogger(__name__)

# int8 must embed this many times faster than the best engine with unmoved vectors to be chosen.
INT8_MIN_SPEEDUP = 1.2
ENGINE_SAMPLE = 16  # texts of the first bulk batch each engine embeds, twice, to be timed
# x86: VNNI (AVX-512 or AVX) and AMX int8; Arm: the dot-product and int8 matrix-multiply extensions.
_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags ``/proc/cpuinfo`` lists (empty where there is none to read)."""
    try:
        return flags_in(Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore"))
    except OSError:
        return frozenset()


def flags_in(cpuinfo: str) -> frozenset[str]:
    """The words of ``/proc/cpuinfo``'s ``flags`` (x86) and ``Features`` (Arm) lines."""
    return frozenset(word for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))
                     for word in line.split())


def cpu_has_fast_int8() -> bool:
    """True if this CPU has int8 dot-product instructions; without them int8 ran slower than fp32 (above)."""
    if not Path("/proc/cpuinfo").is_file():
        return platform.machine() == "arm64"  # macOS on Apple silicon: no /proc, dot products since the M1
    return bool(cpu_flags() & _INT8_FLAGS)


def int8_flags_in(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` text lists an int8 dot-product instruction set."""
    return bool(flags_in(cpuinfo) & _INT8_FLAGS)


def measure_speeds(engines: Mapping[str, Callable[[], object]], texts: int, rounds: int = 2) -> dict[str, float]:
    """Texts per second of each engine embedding the same ``texts`` texts: the best of ``rounds`` runs, the
    engines taking turns, so a burst of other work on the machine slows them all and the first run's one-off
    work (a new input shape compiled) is not counted."""
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(rounds):
        for name, run in engines.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: texts / max(seconds, 1e-9) for name, seconds in best.items()}


def choose_batch_engine(speeds: Mapping[str, float]) -> str:
    """The fastest engine; ``openvino-int8`` only if it beats every other by ``INT8_MIN_SPEEDUP``."""
    exact = {name: speed for name, speed in speeds.items() if name != "openvino-int8"}
    best = max(exact, key=lambda name: exact[name])
    int8 = speeds.get("openvino-int8")
    return "openvino-int8" if int8 is not None and int8 >= INT8_MIN_SPEEDUP * exact[best] else best
