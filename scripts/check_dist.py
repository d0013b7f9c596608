"""Check what the built sdist and wheel hold.

    python scripts/check_dist.py DIST_DIR

The wheel holds the package and its metadata, nothing else. The sdist holds what a downstream
packager needs to build, test and document it: the sources, the tests, the docs and their
configuration, the examples, the licence and the changelog; none of CI's own files.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = "aibridge_transport"
SDIST_NEEDS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "mkdocs.yml",
    f"src/{PACKAGE}/__init__.py",
    f"src/{PACKAGE}/py.typed",
    "tests/conftest.py",
    "docs/index.md",
    "docs/behaviour.md",
    "examples/quickstart.py",
    "benchmarks/reference.json",
    "requirements/lock.txt",
)
SDIST_REFUSES = (".ci/", ".venv", ".git/", "__pycache__", "site/", "benchmarks/results/")


def check_wheel(path: Path) -> list[str]:
    names = zipfile.ZipFile(path).namelist()
    problems = [
        f"wheel holds {name}"
        for name in names
        if not (name.startswith(f"{PACKAGE}/") or ".dist-info/" in name)
    ]
    for needed in (
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/testing/__init__.py",
    ):
        if needed not in names:
            problems.append(f"wheel lacks {needed}")
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as archive:
        # Every member sits under one top directory, "<name>-<version>/".
        names = {member.name.split("/", 1)[1] for member in archive if "/" in member.name}
    problems = [f"sdist lacks {needed}" for needed in SDIST_NEEDS if needed not in names]
    problems += [
        f"sdist holds {name}"
        for name in sorted(names)
        if any(refused in name for refused in SDIST_REFUSES)
    ]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    dist = Path(argv[0])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
