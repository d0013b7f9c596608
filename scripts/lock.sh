#!/usr/bin/env bash
# Refreshes requirements/lock.txt: every dependency of the `test` and `docs` extras pinned to an
# exact version, resolved once for each supported Python (3.11, 3.12, 3.13; a universal lock
# carries a marker wherever they differ). CI and the README's test command install from it, so a
# new release reaches them only when this runs and its diff is committed.
#   bash scripts/lock.sh              # keep every pin that still satisfies pyproject
#   bash scripts/lock.sh --upgrade    # move every pin to the newest release
# Needs uv (`pip install uv`).
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml --extra test --extra docs --universal --python-version 3.11 \
    --no-header --output-file requirements/lock.txt --quiet "$@"
{
    echo "# Exact versions for CI and the README's test command; refresh: bash scripts/lock.sh"
    echo "# (--upgrade to take the newest releases). The newest releases are checked against"
    echo "# this lock by: python scripts/drift.py"
    cat requirements/lock.txt
} > requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
