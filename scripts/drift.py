"""Run the suite against the newest releases of every dependency, and say what moved.

    python scripts/drift.py              # with the Python that runs it; --python PATH for another

CI installs requirements/lock.txt, so a new release cannot break a landing; this is the other
half: a fresh virtual environment (.venv-drift/) takes the newest release that pyproject.toml
allows of everything in the `test` and `docs` extras, prints each package whose newest release
differs from its pin in the lock, then runs mypy and pytest there. A failure names what a lock
refresh (`bash scripts/lock.sh --upgrade`) would break, before anyone takes it. Not part of CI:
its outcome depends on the day it runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-drift"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    return {normalise(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.M)}


def installed_versions(python: Path) -> dict[str, str]:
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    return {normalise(entry["name"]): entry["version"] for entry in json.loads(listing)}


def moved(locked: dict[str, str], newest: dict[str, str]) -> list[str]:
    return [
        f"  {name}: {locked[name]} (locked) -> {newest[name]} (resolved today)"
        for name in sorted(locked)
        if name in newest and newest[name] != locked[name]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the Python of the venv")
    args = parser.parse_args()
    subprocess.run([args.python, "-m", "venv", "--clear", VENV], check=True)
    python = VENV / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--upgrade"]
    subprocess.run([*pip, "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test,docs]"], check=True)

    changes = moved(locked_versions(), installed_versions(python))
    # Not always newer: pip's resolver may settle an extra on an older release than uv's lock.
    print(f"{len(changes)} package(s) differ from the lock:", *changes, sep="\n", flush=True)
    checks = {
        "mypy --strict": [python, "-m", "mypy", "--strict"],
        "pytest": [python, "-m", "pytest", "-q"],
    }
    failed = [name for name, cmd in checks.items() if subprocess.run(cmd, cwd=ROOT).returncode]
    print("drift:", "failed: " + ", ".join(failed) if failed else "the newest releases pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
