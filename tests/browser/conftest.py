"""Browser tests launch Debian's Chromium (see tests/fixtures/browser.py).

The override lives in a conftest because pytest-playwright's own `browser_type_launch_args`
would otherwise win over a fixture registered through `pytest_plugins`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.browser import chromium_launch_args


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    return chromium_launch_args()
