"""The benchmarks page and the README's summary, rendered from a run's JSON.

    python benchmarks/render.py           # writes docs/benchmarks.md and the README's summary
    python benchmarks/render.py --check   # exits 1 when either differs from the JSON
    python benchmarks/render.py --json other.json --print   # another run's page, to stdout
    python benchmarks/render.py --sync-json other-sync.json --print   # another sync run's

The tables are never edited by hand: `tests/test_docs.py` renders them again and compares.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench_sync
from bench_clients import ASGI_TRANSPORT, FACTORY
from run import MEASURED_PACKAGES, fmt, markdown_report

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "benchmarks" / "reference.json"
REFERENCE_SYNC = ROOT / "benchmarks" / "reference-sync.json"
PAGE = ROOT / "docs" / "benchmarks.md"
# The page's prose: Markdown kept beside this script, the tables appended below it.
INTRO = ROOT / "benchmarks" / "page.md"
SYNC_INTRO = ROOT / "benchmarks" / "page-sync.md"
README = ROOT / "README.md"
SUMMARY_START = "<!-- benchmark-summary: rendered by benchmarks/render.py -->"
SUMMARY_END = "<!-- end of benchmark-summary -->"
NOT_RECORDED = "not recorded"

# The README's three rows: (label, scenario, metric).
SUMMARY_ROWS = (
    ("time to the first of 500 SSE events", "sse_500", "first"),
    ("a small JSON request", "small_json", "latency"),
    ("peak heap, slow reader of a 32 MiB stream", "slow_consumer", "peak_heap_4x"),
)


SPREAD = (
    "Ratios move by a few hundredths from run to run on a shared machine; read them with "
    "that spread."
)
# Two hand-overs between threads, each waiting for a wake and the GIL, on a machine shared.
SYNC_SPREAD = (
    "On a shared machine the totals move by a few hundredths from run to run, the first byte "
    "and the first event by up to a tenth: read them with that spread."
)


def run_details(
    meta: dict[str, Any], heading: str = "## The run shown", spread: str = SPREAD
) -> str:
    versions: dict[str, str] = meta.get("versions") or {}
    lines = [
        heading,
        "",
        "| | |",
        "|---|---|",
        f"| command | `{' '.join(meta.get('argv') or []) or NOT_RECORDED}` |",
        f"| date | {meta.get('date', NOT_RECORDED)} |",
        f"| commit | {meta.get('commit') or NOT_RECORDED} |",
        f"| Python | {meta.get('implementation', 'CPython')} {meta.get('python', NOT_RECORDED)} |",
        f"| platform | {meta.get('platform', NOT_RECORDED)} |",
        f"| CPU | {meta.get('cpu', NOT_RECORDED)}, {meta.get('cpus', '?')} cores |",
        f"| allocator | {meta.get('allocator', NOT_RECORDED)} |",
        f"| max_buffered_chunks | {meta.get('max_buffered_chunks', NOT_RECORDED)} |",
    ]
    for name in MEASURED_PACKAGES:
        lines.append(f"| {name} | {versions.get(name, NOT_RECORDED)} |")
    lines.append("")
    lines.append(spread)
    return "\n".join(lines) + "\n"


def render_page(data: dict[str, Any], sync: dict[str, Any]) -> str:
    tables = markdown_report(data["results"], data["targets"])
    page = INTRO.read_text() + "\n" + run_details(data["meta"]) + "\n## Results\n" + tables
    return (
        page
        + SYNC_INTRO.read_text()
        + "\n"
        + run_details(sync["meta"], "### The sync run shown", SYNC_SPREAD)
        + "\n### Results of the sync run\n\n"
        + bench_sync.markdown_report(sync)
    )


def render_summary(data: dict[str, Any]) -> str:
    results = data["results"]["asyncio"]
    python = data["meta"].get("python", NOT_RECORDED)
    lines = [
        SUMMARY_START,
        f"| asyncio, Python {python}, median | httpx.ASGITransport | this library (factory) |",
        "|---|---|---|",
    ]
    for label, scenario, metric in SUMMARY_ROWS:
        row = results[scenario][metric]
        theirs, ours = row[ASGI_TRANSPORT], row[FACTORY]
        ratio = f" ({ours['vs_asgi']:.2f}x)" if ours.get("vs_asgi") is not None else ""
        lines.append(
            f"| {label} | {fmt(metric, theirs['median'])} | {fmt(metric, ours['median'])}{ratio} |"
        )
    lines.append(SUMMARY_END)
    return "\n".join(lines)


def with_summary(readme: str, summary: str) -> str:
    pattern = re.compile(re.escape(SUMMARY_START) + ".*?" + re.escape(SUMMARY_END), re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {SUMMARY_START!r} block")
    return pattern.sub(lambda _: summary, readme)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=REFERENCE, help="the run to render")
    parser.add_argument(
        "--sync-json", type=Path, default=REFERENCE_SYNC, help="the sync run to render"
    )
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--print", action="store_true", help="print the page, write nothing")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    page = render_page(data, json.loads(args.sync_json.read_text()))
    if args.print:
        print(page, end="")
        return 0
    readme = with_summary(README.read_text(), render_summary(data))
    if args.check:
        stale = [
            path.name
            for path, text in ((PAGE, page), (README, readme))
            if not path.exists() or path.read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python benchmarks/render.py")
            return 1
        return 0
    PAGE.write_text(page)
    README.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
