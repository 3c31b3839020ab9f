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


@pytest.fixture(scope="session", autouse=True)
def _assertions_wait_for_the_page() -> None:
    """`expect(...)` retries until the page shows what it should; Playwright gives up after
    5 s by default, which a busy 2-core machine overran once (the studio's balance still
    showed its placeholder). A pass still ends as soon as the text is there."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
