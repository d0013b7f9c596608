"""requirements/lock.txt pins every dependency pyproject.toml names, within its bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SELF = canonicalize_name(PYPROJECT["project"]["name"])
LOCKED_EXTRAS = ("test", "docs")  # what scripts/lock.sh resolves


def locked() -> dict[str, Version]:
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    pins = re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.M)
    return {canonicalize_name(m[1]): Version(m[2]) for m in pins}


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The runtime dependencies and those of `extras`, following the project's own extras."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    found = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in map(Requirement, optional[extra]):
            if canonicalize_name(requirement.name) == SELF:
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize(
    "requirement", requirements(LOCKED_EXTRAS), ids=lambda requirement: str(requirement)
)
def test_the_lock_pins_each_requirement_within_its_bounds(requirement: Requirement) -> None:
    pins = locked()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} is not in the lock: run bash scripts/lock.sh"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"{name}=={pins[name]} is outside {requirement.specifier}: run bash scripts/lock.sh"
    )
