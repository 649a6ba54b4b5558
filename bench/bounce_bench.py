"""Bounce parser benchmark: `.venv/bin/python bench/bounce_bench.py [FOLDER] [--list]`.

Reads every *.eml under FOLDER (default ../shared/bounces beside the repository: real emails
from many MTAs, unlabelled) with relay.reports.parse_report and with flufl.bounce, and prints
files, reports by type, recipients found, with a status, with a class, flufl.bounce's recipients
on the same files, and the parse rate of each. `--list` prints one line per file (to find the
shapes the parser misses). Skips (exit 0) when the folder is missing.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.reports import parse_report  # noqa: E402


def flufl_addresses(raw: bytes) -> set[str]:
    from flufl.bounce import all_failures
    try:
        temporary, permanent = all_failures(message_from_bytes(raw, policy=policy.compat32))
    except Exception:  # noqa: BLE001 - count a crash as nothing found
        return set()
    return {a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)
            for a in temporary | permanent}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared" / "bounces"))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    folder = Path(args.folder)
    files = sorted(folder.rglob("*.eml")) if folder.is_dir() else []
    if not files:
        print(f"skipped: no *.eml under {folder}")
        return 0
    raws = [(f, f.read_bytes()) for f in files]

    t0 = time.perf_counter()
    reports = [parse_report(raw) for _, raw in raws]
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = [flufl_addresses(raw) for _, raw in raws]
    flufl_s = time.perf_counter() - t0

    types = collections.Counter(r.type for r in reports)
    failed = [(r, x) for r in reports for x in r.recipients if r.type == "bounce"]
    rows = [
        ("files", len(raws)),
        ("by type", ", ".join(f"{k} {v}" for k, v in types.most_common())),
        ("bounce reports with >= 1 recipient",
         sum(1 for r in reports if r.type == "bounce" and r.recipients)),
        ("bounced recipients found", len(failed)),
        ("  with a status", sum(1 for _, x in failed if x.status)),
        ("  with a class", sum(1 for _, x in failed if x.class_)),
        ("  with the server's words", sum(1 for _, x in failed if x.diagnostic)),
        ("  hard / soft", f"{sum(1 for _, x in failed if x.class_ == 'hard')} / "
                          f"{sum(1 for _, x in failed if x.class_ == 'soft')}"),
        ("  by reason", ", ".join(f"{k} {v}" for k, v in collections.Counter(
            x.reason for _, x in failed).most_common())),
        ("complaints with a feedback type",
         sum(1 for r in reports if r.type == "complaint" and r.feedback_type)),
        ("files where flufl.bounce finds >= 1 address", sum(1 for t in theirs if t)),
        ("flufl.bounce addresses found", sum(len(t) for t in theirs)),
        ("files with addresses from flufl.bounce but none from us",
         sum(1 for r, t in zip(reports, theirs, strict=True) if t and not r.recipients)),
        ("parse rate, ours (msg/s)", f"{len(raws) / ours_s:,.0f}"),
        ("parse rate, flufl.bounce (msg/s)", f"{len(raws) / flufl_s:,.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.list:
        for (f, _), r, t in zip(raws, reports, theirs, strict=True):
            rc = "; ".join(f"{x.address} {x.status} {x.class_}/{x.reason}" for x in r.recipients)
            print(f"{f.name:32} {r.type:10} {r.source:9} {rc[:120]} | flufl={sorted(t)[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
