#!/usr/bin/env bash
# The test command: lint, format check, strict typing, then the tests on asyncio and trio.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy --strict
pytest
