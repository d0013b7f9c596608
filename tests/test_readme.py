"""The README's promises about itself: short, its commands those CI runs, its quick start the
example's, its install lines honest about an unreleased package, its links relative (good in a
clone and on any host). (Its Python blocks run in test_docs.py.)"""

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
    """The first block: the demo and the test commands."""
    _, _, text = fenced_blocks("bash")[0]
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
    install = README.index("pip install -e '.[httpx2]'")
    assert install < README.index("```python")


# Hosts the project will live on once it is published; until then nothing may link to them.
UNPUBLISHED = ("aibridge-transport.readthedocs.io", "github.com/aibridge-transport")
LINKED_FILES = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "mkdocs.yml",
    ROOT / "pyproject.toml",
]


def test_the_readme_says_the_package_is_unreleased_and_how_to_install_it_meanwhile() -> None:
    install = README[README.index("## Install") : README.index("## Quick start")]
    assert "**Unreleased**" in install
    assert "pip install -e '.[httpx2]'" in install
    assert "python -m build --wheel && pip install " in install


def test_links_are_relative_paths_to_files_that_exist() -> None:
    targets = re.findall(r"\]\(([^)]+)\)", README)
    local = [target for target in targets if not target.startswith("https://")]
    assert len(local) >= 10
    anchors = {
        "#" + re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", README, re.M)
    }
    for target in local:
        if target.startswith("#"):
            assert target in anchors, target
        else:
            assert (ROOT / target.split("#", 1)[0]).is_file(), target


def test_nothing_links_to_a_site_or_repository_that_does_not_exist_yet() -> None:
    assert "urls" not in PYPROJECT["project"]
    pages = [*LINKED_FILES, *sorted((ROOT / "docs").glob("*.md"))]
    for path in pages:
        text = path.read_text()
        for host in UNPUBLISHED:
            assert host not in text, f"{path.relative_to(ROOT)} links to {host}"


def requirement_names(extra: str) -> set[str]:
    """The distributions an extra names directly (its own extras left aside)."""
    names = set()
    for line in PYPROJECT["project"]["optional-dependencies"][extra]:
        name = re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower()
        if name != "aibridge-transport":
            names.add(name)
    return names


def test_the_extras_table_lists_every_extra_with_what_it_adds() -> None:
    rows = {
        cells[0].strip("`"): cells[1]
        for line in README.splitlines()
        if line.startswith("| `")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(rows) == set(extras)
    for extra in extras:
        adds = {name.strip() for name in rows[extra].replace(" and ", ", ").split(",")}
        assert requirement_names(extra) <= adds, extra


def test_the_wheel_install_line_installs_the_wheel_with_its_extras(tmp_path: Path) -> None:
    """The README's second install line, run as written in a fresh venv (offline, from uv's
    cache: the dependencies are those this suite runs on)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("needs uv, to install without the network")
    [wheel_line] = [
        line.split("  #")[0]
        for _, _, block in fenced_blocks("bash")
        for line in block.splitlines()
        if line.startswith("python -m build")
    ]
    build, pip_install = wheel_line.split(" && ")
    assert build == "python -m build --wheel"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", ROOT],
        check=True,
        capture_output=True,
        timeout=300,
    )
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, tmp_path / "venv"], check=True)
    venv_python = tmp_path / "venv" / "bin" / "python"
    uv_pip = f"{uv} pip install --offline -q --python {venv_python}"
    subprocess.run(
        ["bash", "-c", pip_install.replace("pip install", uv_pip, 1)],
        cwd=tmp_path,
        check=True,
        timeout=300,
    )

    code = "import aibridge_transport.httpx2, httpx2; print(aibridge_transport.__file__)"
    completed = subprocess.run(
        [venv_python, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert str(tmp_path / "venv") in completed.stdout


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
