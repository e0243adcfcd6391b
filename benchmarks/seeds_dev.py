"""The seed development questions through the HTTP API, as a user asks them: a table of what `/v1/ask` answered.

    python benchmarks/seeds_dev.py                          # starts `newsroom-qa serve` on the seeds (temp data dir)
    python benchmarks/seeds_dev.py --url http://127.0.0.1:8000
    python benchmarks/seeds_dev.py --out benchmarks/results/seeds-dev.md

A question with accepted answers is right when the answer holds one of them and at most ``--extra-words`` words
that are in none of them; a question without (the seeds do not answer it) is right when the service abstains. Needs
``../shared/seeds_dev_questions.jsonl`` (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx
from load import service_at

from service.answering.readers.squad_metrics import holds_accepted

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "seeds_dev_questions.jsonl"


def verdict(row: dict[str, object], body: dict[str, object], extra_words: int) -> bool:
    answer = None if body["abstained"] else body.get("answer")
    return holds_accepted(answer if isinstance(answer, str) else None,
                          [str(a) for a in row["any"]], extra_words)  # type: ignore[attr-defined]


def table(rows: list[dict[str, object]], bodies: list[dict[str, object]], extra_words: int) -> str:
    lines = ["| id | question | accepted | answer | cited | confidence | right |", "|---|---|---|---|---|---|---|"]
    oks = [verdict(row, body, extra_words) for row, body in zip(rows, bodies, strict=True)]
    for row, body, ok in zip(rows, bodies, oks, strict=True):
        citations = body.get("citations") or []
        cited = citations[0]["doc_id"][:3] if citations else "-"  # type: ignore[index]
        answer = "*(abstained)*" if body["abstained"] else str(body["answer"])
        accepted = " / ".join(str(a) for a in row["any"]) or "*(unanswerable)*"  # type: ignore[attr-defined]
        lines.append(f"| {row['id']} | {row['q']} | {accepted} | {answer} | {cited} | {body['confidence']:.2f} | "
                     f"{'yes' if ok else 'no'} |")
    answerable = [ok for row, ok in zip(rows, oks, strict=True) if row["any"]]
    unanswerable = [ok for row, ok in zip(rows, oks, strict=True) if not row["any"]]
    lines.append("")
    lines.append(f"{sum(oks)} of {len(rows)} right: {sum(answerable)} of {len(answerable)} answerable answered, "
                 f"{sum(unanswerable)} of {len(unanswerable)} unanswerable abstained")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="An already running service on the seeds (default: start one).")
    parser.add_argument("--questions", type=Path, default=DEV)
    parser.add_argument("--extra-words", type=int, default=4, help="Words an answer may have beyond the accepted one.")
    parser.add_argument("--out", type=Path, help="Also write the table to this file.")
    args = parser.parse_args()
    if not args.questions.is_file():
        sys.exit(f"{args.questions} not found: the seed dev questions come with ../shared beside the checkout")
    rows = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    with service_at(args.url, None) as url, httpx.Client(base_url=url, timeout=120) as client:
        bodies = []
        for row in rows:
            response = client.post("/v1/ask", json={"question": row["q"]})
            response.raise_for_status()
            bodies.append(response.json())
    text = table(rows, bodies, args.extra_words)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
