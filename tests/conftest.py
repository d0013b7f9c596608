from __future__ import annotations

import pytest


# Both backends, named explicitly: anyio's default fixture silently skips trio when it is
# missing, and a missing trio must fail loudly here.
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
