"""Data taken from other public projects: recorded provider traffic (VCR cassettes) and an
excerpt of OpenAI's OpenAPI spec.

It is not kept in this repository. Each set is a folder, with a `SOURCES.md` naming every
file's repository, commit and licence, looked up by name in `$AIBRIDGE_OUTSIDE_DATA/<name>`,
then in `shared/<name>` beside the checkout (where CI finds it). A test that needs a set it
cannot find skips and says where the set goes; the checks that need no outside data run anyway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

OUTSIDE_DATA_ENV: Final = "AIBRIDGE_OUTSIDE_DATA"
_CHECKOUT: Final = Path(__file__).resolve().parent.parent


def outside_data(name: str) -> Path | None:
    """The folder of the data set `name`, or `None` when it is nowhere to be found."""
    roots = [Path(os.environ[OUTSIDE_DATA_ENV])] if os.environ.get(OUTSIDE_DATA_ENV) else []
    roots.append(_CHECKOUT.parent / "shared")
    for root in roots:
        if (root / name).is_dir():
            return root / name
    return None


def require_outside_data(name: str) -> Path:
    """The folder of `name`; skips the calling test when the set is absent."""
    found = outside_data(name)
    if found is None:
        pytest.skip(
            f"the outside data set {name!r} is not here: it is public data kept outside the "
            f"repository; put it in ${OUTSIDE_DATA_ENV}/{name} or ../shared/{name}"
        )
    return found
