"""Drift report: every way `FakeAIBridge` differs from real recorded provider traffic.

    python scripts/drift_fake.py [--recordings DIR] [--unexplained]

Replays each recorded exchange (tests/recorded_traffic_sources.toml) through the fake with the
real answer scripted, and prints each difference once, grouped by severity and by the known
difference that explains it (tests/recorded_traffic_known.py), with the exchanges it was seen
on. Unexplained differences and stale known entries come first. Exits 1 when there are any.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from outside_data import OUTSIDE_DATA_ENV
from recorded_traffic import (
    Finding,
    KnownDifference,
    load_all,
    recorded_traffic_root,
    run_exchange,
    stale,
)
from recorded_traffic_known import KNOWN_DIFFERENCES


async def collect(root: Path) -> tuple[list[Finding], int, int, int]:
    findings: list[Finding] = []
    cassettes = exchanges = others = 0
    for _, loaded, skipped in load_all(root):
        cassettes += 1
        others += skipped
        for exchange in loaded:
            exchanges += 1
            findings += await run_exchange(exchange, KNOWN_DIFFERENCES)
    return findings, cassettes, exchanges, others


def where_seen(findings: list[Finding]) -> str:
    names = sorted({finding.exchange.name for finding in findings})
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def report(findings: list[Finding], *, unexplained_only: bool) -> int:
    unexplained: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
    by_entry: dict[int, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.known is None:
            key = (finding.severity, finding.exchange.api, str(finding.difference.kind))
            unexplained[(*key[:2], f"{finding.difference.kind} {finding.difference.where}")].append(
                finding
            )
        else:
            by_entry[id(finding.known)].append(finding)
    unneeded = stale(KNOWN_DIFFERENCES, findings)
    refused = {f.exchange.name for f in findings if f.difference.kind == "refused"}

    print(f"\n== Unexplained differences: {len(unexplained)}")
    for (severity, api, what), seen in sorted(unexplained.items()):
        print(f"  [{severity}] {api}: {what}\n      real/fake: {seen[0].difference}")
        print(f"      seen on {where_seen(seen)}")
    print(f"\n== Stale known differences (no longer found; delete them): {len(unneeded)}")
    for known in unneeded:
        limited = f" on {', '.join(known.exchanges)}" if known.exchanges else ""
        print(f"  [{known.severity}] {known.kind} {known.where}{limited}: {known.reason}")
    print(f"\n== Valid recorded requests the fake refuses: {len(refused)}")
    for name in sorted(refused):
        print(f"  {name}")
    if not unexplained_only:
        entries = [k for k in KNOWN_DIFFERENCES if id(k) in by_entry]
        for severity in ("high", "low"):
            group = [k for k in entries if k.severity == severity]
            print(f"\n== Known differences, {severity} severity: {len(group)}")
            for known in group:
                print_known(known, by_entry[id(known)])
    return 1 if unexplained or unneeded else 0


def print_known(known: KnownDifference, seen: list[Finding]) -> None:
    wheres = sorted({f"{f.difference.kind} {f.difference.where}" for f in seen})
    print(f"  {', '.join(known.apis)}: {known.reason}")
    for where in wheres[:6]:
        print(f"      {where}")
    if len(wheres) > 6:
        print(f"      ... and {len(wheres) - 6} more places")
    print(f"      seen on {where_seen(seen)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--outside-data",
        type=Path,
        help=f"the folder holding recorded-traffic/ (or ${OUTSIDE_DATA_ENV})",
    )
    parser.add_argument("--unexplained", action="store_true", help="only what needs attention")
    options = parser.parse_args()
    if options.outside_data is not None:
        os.environ[OUTSIDE_DATA_ENV] = str(options.outside_data)
    root = recorded_traffic_root()
    if root is None:
        print("no recorded traffic found: see tests/recorded_traffic_sources.toml", file=sys.stderr)
        return 2
    findings, cassettes, exchanges, others = anyio.run(collect, root)
    print(
        f"{cassettes} cassettes from {root}: {exchanges} exchanges replayed"
        f" ({others} on routes the fake does not serve skipped), {len(findings)} differences"
    )
    return report(findings, unexplained_only=options.unexplained)


if __name__ == "__main__":
    sys.exit(main())
