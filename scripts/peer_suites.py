"""The peer suites: Starlette's and FastAPI's own tests, through our sync transport.

    python scripts/peer_suites.py                      # both suites, as CI runs them
    python scripts/peer_suites.py starlette            # one suite
    python scripts/peer_suites.py fastapi -- -k query  # extra pytest arguments for a subset
    python scripts/peer_suites.py --runs 3             # each suite three times over

Each suite's sdist is downloaded at the version pinned in requirements/lock.txt (with pip, into
a cache: `--cache`, default `~/.cache/aibridge-transport/peers`), and its `tests/` run with
pytest against the installed packages, Starlette's TestClient sending HTTP through our
`StreamingASGITransport` (the plugin `peer_swap.py`). `peer_suites.toml` lists the tests
expected to fail, each with its reason; any other failure, or a listed test that passes,
fails the run. Exit status 0 when every suite passed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
LOCK = ROOT / "requirements" / "lock.txt"
SUITES_FILE = SCRIPTS / "peer_suites.toml"
DEFAULT_CACHE = Path(
    os.environ.get("AIBRIDGE_PEERS_CACHE", Path.home() / ".cache" / "aibridge-transport" / "peers")
)


def locked_version(distribution: str) -> str:
    """The version requirements/lock.txt pins for `distribution`."""
    match = re.search(rf"^{re.escape(distribution)}==(\S+)", LOCK.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{distribution} is not pinned in {LOCK.relative_to(ROOT)}")
    return match.group(1)


def pip_command() -> list[str]:
    """pip of this interpreter, or the first on PATH (a uv-made venv has none of its own)."""
    if importlib.util.find_spec("pip") is None:
        return ["pip"]
    return [sys.executable, "-m", "pip"]


def sdist_tests(distribution: str, pinned: str, cache: Path) -> Path:
    """The folder holding the sdist's `tests/` and `pyproject.toml`, downloaded once."""
    folder = cache / f"{distribution}-{pinned}"
    if (folder / "tests").is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{distribution}-{pinned}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                *pip_command(),
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                str(cache),
                f"{distribution}=={pinned}",
            ],
            check=True,
        )
    with tempfile.TemporaryDirectory(dir=cache) as unpacked, tarfile.open(archive) as tar:
        prefix = f"{distribution}-{pinned}/"
        members = [
            member
            for member in tar.getmembers()
            if member.name == prefix + "pyproject.toml" or member.name.startswith(prefix + "tests/")
        ]
        tar.extractall(unpacked, members=members, filter="data")
        Path(unpacked, prefix).rename(folder)
    return folder


# The sections of `expected_failures` (peer_suites.toml), as the xfail reasons name them.
SECTIONS = {
    section
    for suite in tomllib.loads(SUITES_FILE.read_text()).values()
    for section in suite.get("expected_failures", {})
}


def outcomes(junit: Path) -> tuple[Counter[str], Counter[str]]:
    """Counts by outcome, and the expected failures by their section of peer_suites.toml."""
    counts: Counter[str] = Counter()
    sections: Counter[str] = Counter()
    for case in ET.parse(junit).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if case.find("failure") is not None:
            counts["failed"] += 1
        elif case.find("error") is not None:
            counts["errors"] += 1
        elif skipped is not None and skipped.get("type") == "pytest.xfail":
            counts["xfailed"] += 1
            section = skipped.get("message", "").removeprefix("xfail ").partition(":")[0]
            sections[section if section in SECTIONS else "their own xfail"] += 1
        elif skipped is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, sections


def run_suite(
    name: str, suite: dict[str, Any], settings: dict[str, Any], cache: Path, extra: list[str]
) -> bool:
    distribution = suite["distribution"]
    pinned = locked_version(distribution)
    installed = version(distribution)
    if installed != pinned:
        raise SystemExit(
            f"{distribution} {installed} is installed, the lock pins {pinned}: "
            "install from requirements/lock.txt"
        )
    folder = sdist_tests(distribution, pinned, cache)
    with tempfile.TemporaryDirectory() as scratch:
        junit = Path(scratch, "junit.xml")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            *(arg for plugin in settings["disable_plugins"] for arg in ("-p", f"no:{plugin}")),
            "-p",
            "peer_swap",
            "-rfEX",
            f"--junitxml={junit}",
            *suite.get("pytest_args", []),
            *extra,
        ]
        env = dict(os.environ, PEER_SUITE=name, PEER_SUITE_WHOLE="0" if extra else "1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")]))
        print(f"== {name} {pinned}: {' '.join(command[3:])}", flush=True)
        started = time.monotonic()
        try:
            returncode = subprocess.run(
                command, cwd=folder, env=env, timeout=settings["suite_timeout"]
            ).returncode
        except subprocess.TimeoutExpired:
            print(f"== {name}: still running after {settings['suite_timeout']} s: stopped (hung)")
            return False
        seconds = time.monotonic() - started
        if not junit.exists():
            print(f"== {name}: pytest exited {returncode} without a report")
            return False
        counts, sections = outcomes(junit)
    collected = sum(counts.values())
    by_section = ", ".join(f"{count} {section}" for section, count in sorted(sections.items()))
    print(
        f"== {name} {pinned}: {collected} collected, {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['errors']} errors, {counts['skipped']} skipped, "
        f"{counts['xfailed']} expected failures ({by_section or 'none'}) in {seconds:.0f} s",
        flush=True,
    )
    return returncode == 0


def main() -> int:
    with SUITES_FILE.open("rb") as file:
        config = tomllib.load(file)
    settings = config.pop("settings")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", help=f"of {', '.join(config)} (default: all)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--runs", type=int, default=1, help="run each suite this many times")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    unknown = set(args.suites) - set(config)
    if unknown:
        parser.error(f"no such suite: {', '.join(sorted(unknown))}")
    results = [
        run_suite(name, config[name], settings, args.cache, extra)
        for name in args.suites or list(config)
        for _ in range(args.runs)
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
