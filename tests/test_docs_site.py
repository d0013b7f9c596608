"""The documentation site builds with Zensical in strict mode, from mkdocs.yml, with the API
reference and without an end-of-life notice; a broken link or anchor fails the build
(docs/design.md, "The documentation site")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the site is built from (mkdocs.yml: the pages, the API reference's sources, and the
# README and changelog that pages include).
SOURCES = ["mkdocs.yml", "docs", "src", "README.md", "CHANGELOG.md"]


def build(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zensical", "build", "--strict"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def test_the_site_builds_strictly_with_its_api_reference_and_no_end_of_life_notice(
    tree: Path,
) -> None:
    completed = build(tree)

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "No issues found" in output
    assert "end of life" not in output.lower()
    reference = (tree / "site" / "reference" / "index.html").read_text()
    assert 'id="aibridge_transport.InProcessTransportFactory"' in reference
    home = (tree / "site" / "index.html").read_text()
    assert "<code>frameworks</code>" in home  # the README's extras table, included


@pytest.mark.parametrize(
    ("link", "problem"),
    [("[gone](nowhere.md)", "page does not exist"), ("[s99](behaviour.md#s99)", "anchor")],
)
def test_a_broken_link_fails_the_build(tree: Path, link: str, problem: str) -> None:
    page = tree / "docs" / "errors.md"
    page.write_text(page.read_text() + f"\nSee {link}.\n")

    completed = build(tree)

    assert completed.returncode != 0
    assert problem in completed.stdout + completed.stderr
