"""Run the SDK tests on the oldest openai and anthropic that pyproject.toml claims to support.

    python scripts/sdk_floor.py            # in a venv installed from requirements/lock.txt

The lower bounds of the `examples` extra are claims: this installs exactly those versions over
the locked ones, runs every test module that imports an SDK (and the docs' code blocks), then
puts the locked versions back. CI runs it on Python 3.11 after the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("openai", "anthropic")


def floors() -> dict[str, str]:
    """`{"openai": "3.14.1", ...}`: each SDK's lower bound in the `examples` extra."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {}
    for requirement in pyproject["project"]["optional-dependencies"]["examples"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement)
        if match and match[1] in SDKS:
            found[match[1]] = match[2]
    missing = set(SDKS) - set(found)
    if missing:
        raise SystemExit(f"no `name>=version` lower bound for {sorted(missing)} in pyproject")
    return found


def locked() -> dict[str, str]:
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    return {sdk: re.search(rf"^{sdk}==(\S+)", lock, re.M)[1] for sdk in SDKS}  # type: ignore[index]


def sdk_test_modules() -> list[str]:
    modules = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if re.search(r"^import (openai|anthropic)$", path.read_text(), re.M)
    ]
    return [*modules, "tests/test_docs.py", "tests/test_examples.py"]


def pip_install(pins: dict[str, str]) -> None:
    specs = [f"{name}=={version}" for name, version in pins.items()]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *specs], check=True)


def main() -> int:
    oldest = floors()
    print(f"SDK floor: {', '.join(f'{n} {v}' for n, v in oldest.items())}", flush=True)
    pip_install(oldest)
    try:
        tests = [sys.executable, "-m", "pytest", "-q", *sdk_test_modules()]
        return subprocess.run(tests).returncode
    finally:
        pip_install(locked())


if __name__ == "__main__":
    sys.exit(main())
