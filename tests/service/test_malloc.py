"""glibc malloc tuning for the server (service/malloc.py): uvicorn's threads share two heaps instead of one each.

What that saves is measured by the benchmark (benchmarks/RESULTS.md); here, that the setting takes hold and that
the user's own ``MALLOC_*`` variables win over it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")

# Eight threads allocate at the same time, as a busy thread pool does; then glibc's malloc_info(3) lists its heaps.
WORKLOAD = """
import ctypes, sys, threading
from service.malloc import tune_malloc

tuned = tune_malloc() if sys.argv[1] == "tune" else False
barrier = threading.Barrier(8)
kept = []

def work():
    barrier.wait()
    for _ in range(200):
        kept.append(bytearray(4096))

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(out))
libc.fclose(ctypes.c_void_p(out))
print(tuned)
"""


def heaps(tmp_path, mode: str, **env: str) -> tuple[bool, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    report = tmp_path / f"{mode}-{len(env)}.xml"
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode, str(report)], env={**environment, **env},
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip() == "True", report.read_text().count("<heap nr=")


def test_threads_share_two_heaps_when_tuned(tmp_path):
    tuned, tuned_heaps = heaps(tmp_path, "tune")
    untuned, default_heaps = heaps(tmp_path, "default")
    assert tuned and not untuned
    assert tuned_heaps <= 2 < default_heaps, (tuned_heaps, default_heaps)


def test_the_users_own_malloc_variables_win(tmp_path):
    tuned, n_heaps = heaps(tmp_path, "tune", MALLOC_ARENA_MAX="4")
    assert not tuned and n_heaps > 2


# 200 MB in 4 KB blocks (below glibc's mmap threshold: they live in the heap), then freed but for the last block,
# which pins the heap's top so only malloc_trim's walk over the freed middle can give the pages back.
TRIM_WORKLOAD = """
import sys
from service.malloc import trim_heap

def anon_kb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon"))

blocks = [bytearray(4096) for _ in range(50_000)]
last = blocks[-1]
del blocks
freed = anon_kb()
trimmed = trim_heap()
print(trimmed, freed - anon_kb())
"""


def test_trim_heap_gives_freed_heap_pages_back():
    out = subprocess.run([sys.executable, "-c", TRIM_WORKLOAD], capture_output=True, text=True, timeout=120,
                         check=True, env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")})
    trimmed, returned_kb = out.stdout.split()
    assert trimmed == "True"
    assert int(returned_kb) > 100_000, out.stdout  # most of the 200 MB freed
