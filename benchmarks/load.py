"""Load check: N concurrent clients for T seconds against a real server on loopback.

    python benchmarks/load.py                      # starts `newsroom-qa serve` on the seeds in a temp data dir
    python benchmarks/load.py --articles tests/fixtures/articles --clients 8 --seconds 30
    python benchmarks/load.py --url http://127.0.0.1:8000   # an already running service

Prints throughput, p50/p95/p99 latency per endpoint and overall, and the error count. Not a test: the figures
depend on the machine, and go in the README with the machine named.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["Who doubted the crematorium claim?", "Which prison is about 45 minutes from Damascus?",
             "Who is the mayor of Vellmont?", "Who doubted the pipeline claim?", "What is the capital of France?",
             "How many barrels a week were emptied into the water?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(articles: Path | None, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "NEWSROOM_QA_DATA_DIR": str(data_dir), "NEWSROOM_QA_RATE_LIMIT": "off",
           "NEWSROOM_QA_RATE_LIMIT_ANONYMOUS": "off", "NEWSROOM_QA_LOG_FORMAT": "text"}
    if articles is not None:
        env["NEWSROOM_QA_SEEDS_DIR"] = str(articles)
    exe = Path(sys.executable).with_name("newsroom-qa")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the service exited during start-up; run `newsroom-qa serve` to see why")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the service did not become ready within 300 s")


@contextmanager
def service_at(url: str | None, articles: Path | None) -> Iterator[str]:
    """The URL of the running service given, or of one started on ``articles`` (the seeds if None) in a temporary
    data dir and stopped afterwards."""
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="newsroom-qa-bench-") as tmp:
        proc, started = start_server(articles, Path(tmp) / "data")
        try:
            yield started
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def client_loop(url: str, n: int, until: float, samples: list[tuple[str, float, int]], lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        i = n
        while time.monotonic() < until:
            question = QUESTIONS[i % len(QUESTIONS)]
            path, body = (("/v1/ask", {"question": question}) if i % 2 == 0
                          else ("/v1/search", {"query": question}))
            started = time.perf_counter()
            try:
                status = client.post(path, json=body).status_code
            except httpx.HTTPError:
                status = 0
            with lock:
                samples.append((path, time.perf_counter() - started, status))
            i += 1


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def report(samples: list[tuple[str, float, int]], seconds: float, clients: int) -> str:
    lines = [f"{clients} clients for {seconds:.0f} s: {len(samples)} requests, "
             f"{len(samples) / seconds:.1f} requests/s, errors {sum(1 for *_, s in samples if s != 200)}",
             "| endpoint | requests | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
    groups = {"all": samples, **{p: [x for x in samples if x[0] == p] for p in ("/v1/ask", "/v1/search")}}
    for name, group in groups.items():
        ms = [1000 * t for _, t, _ in group]
        if ms:
            lines.append(f"| {name} | {len(ms)} | {percentile(ms, 50):.0f} | {percentile(ms, 95):.0f} | "
                         f"{percentile(ms, 99):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="An already running service (default: start one).")
    parser.add_argument("--articles", type=Path, default=None,
                        help="Articles to serve (default: the bundled seeds).")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with service_at(args.url, args.articles) as url:
        httpx.post(url + "/v1/ask", json={"question": QUESTIONS[0]}, timeout=60)  # warm-up
        samples: list[tuple[str, float, int]] = []
        lock = threading.Lock()
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=client_loop, args=(url, n, until, samples, lock))
                   for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(report(samples, args.seconds, args.clients))

if __name__ == "__main__":
    main()
