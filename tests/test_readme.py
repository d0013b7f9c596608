"""The README's promises about itself: short, its commands those CI runs, its quick start the
example's, its links good on the package index too. (Its Python blocks run in test_docs.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
URLS = PYPROJECT["project"]["urls"]
DOCS_URL = "https://aibridge-transport.readthedocs.io/en/latest/"


def fenced_blocks(language: str) -> list[tuple[int, int, str]]:
    """(first line, closing line, text) of each block in `language`, lines counted from 1."""
    lines = README.splitlines()
    found: list[tuple[int, int, str]] = []
    start: int | None = None
    for number, line in enumerate(lines, start=1):
        if start is None and line == f"```{language}":
            start = number
        elif start is not None and line == "```":
            found.append((start, number, "\n".join(lines[start : number - 1]) + "\n"))
            start = None
    return found


def commands() -> list[str]:
    [(_, _, text)] = fenced_blocks("bash")
    return text.splitlines()


def test_the_readme_stays_short() -> None:
    assert len(README.splitlines()) <= 200


def test_the_two_first_commands_are_the_demo_and_the_tests() -> None:
    demo, tests = commands()
    assert demo.endswith("&& .venv/bin/python examples/chat_stream.py")
    assert (ROOT / "examples" / "chat_stream.py").exists()
    assert "pip install -r requirements/lock.txt -e ." in tests


def test_the_readme_test_command_is_what_ci_runs_on_python_3_11() -> None:
    _, tests = commands()
    install, checks = tests.split(" && . .venv/bin/activate && ")
    # The same lock as CI: a new contributor gets what CI got.
    assert install.endswith("pip install -r requirements/lock.txt -e .")
    assert "python -m pip install --quiet -r requirements/lock.txt -e ." in CI
    ci_lines = [line.strip() for line in CI.splitlines()]
    # CI adds `|| exit 1`: under `set -e` a failure inside an && chain would not stop it.
    assert f"{checks} || exit 1" in ci_lines
    assert CI.index(f"{checks} || exit 1") < CI.index("for minor in 3.12 3.13")


def test_ci_runs_the_suite_on_every_python_the_package_claims() -> None:
    claimed = {
        classifier.rsplit(" :: ", 1)[1]
        for classifier in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    }
    assert claimed == {"3.11", "3.12", "3.13"}
    assert "MINORS=(3.11 3.12 3.13)" in CI
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_the_quick_start_is_the_example_and_ends_by_line_60() -> None:
    _, closing, text = fenced_blocks("python")[0]
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert text == example[example.index("\nimport anyio\n") + 1 :]
    assert closing <= 60, "a new user reaches a streamed completion without reading past line 60"
    install = README.index("pip install 'aibridge-transport[httpx2]'")
    assert install < README.index("```python")


def test_every_link_is_absolute_so_it_works_on_the_package_index() -> None:
    targets = re.findall(r"\]\(([^)]+)\)", README)
    assert targets
    for target in targets:
        assert target.startswith("https://"), target


def test_links_to_the_docs_site_name_pages_that_exist() -> None:
    pages = re.findall(re.escape(DOCS_URL) + r"([a-z-]*)/?(?:#[\w-]+)?\)", README)
    assert pages
    for page in pages:
        source = ROOT / "docs" / f"{page or 'index'}.md"
        assert source.exists(), f"{DOCS_URL}{page}/ has no docs/{page}.md"


def test_repository_links_name_files_that_exist_and_match_the_project_urls() -> None:
    assert URLS["Documentation"] == DOCS_URL.removesuffix("en/latest/")
    files = re.findall(re.escape(URLS["Source"]) + r"/blob/main/([^)#]+)", README)
    assert files
    for path in files:
        assert (ROOT / path).exists(), path
    assert URLS["Changelog"] == f"{DOCS_URL}changelog/"


def find_python(minor: str) -> subprocess.CompletedProcess[str]:
    """Run .ci/run's own `find_python` for one minor version."""
    script = f'source <(sed -n "/^find_python()/,/^}}/p" .ci/run) && find_python {minor}'
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_ci_stops_with_a_clear_message_when_a_python_is_missing() -> None:
    completed = find_python("3.99")

    assert completed.returncode == 1
    assert completed.stderr.startswith("CI needs CPython 3.99: none under ")
    assert completed.stdout == ""


def test_ci_finds_the_python_running_this_test() -> None:
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        pytest.skip("CI finds its Pythons through pyenv, which this machine lacks")
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=True).stdout
    if not list(Path(root.strip(), "versions").glob(f"{minor}.*")):
        pytest.skip(f"pyenv on this machine has no Python {minor}")

    completed = find_python(minor)

    assert completed.returncode == 0, completed.stderr
    found = Path(completed.stdout.strip())
    assert found.is_file()
    assert f"/versions/{minor}." in str(found)
