"""Settings refuse secrets that would let anyone forge storage URLs, sessions and CSRF tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reframe.config import DEV_SECRET, MIN_SECRET_LENGTH, Settings

STRONG = "k" * MIN_SECRET_LENGTH


def test_development_on_loopback_takes_any_secret() -> None:
    assert Settings().secret_key == DEV_SECRET
    assert Settings(secret_key="short").secret_key == "short"
    assert Settings(public_base_url="http://localhost:9000", secret_key="x").secret_key == "x"


@pytest.mark.parametrize(
    "exposure",
    [
        {"env": "production"},
        {"public_base_url": "https://reframe.example.com"},
        {"public_base_url": "http://10.1.2.3:8000"},
    ],
)
def test_exposed_settings_refuse_the_development_secret(exposure: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="development secret") as caught:
        Settings(**exposure)
    assert "secrets.token_urlsafe" in str(caught.value)  # says how to make one


@pytest.mark.parametrize(
    "exposure",
    [{"env": "production"}, {"public_base_url": "https://reframe.example.com"}],
)
def test_exposed_settings_refuse_short_secrets(exposure: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=f"at least {MIN_SECRET_LENGTH} characters") as caught:
        Settings(**exposure, secret_key="x" * (MIN_SECRET_LENGTH - 1))
    assert "secrets.token_urlsafe" in str(caught.value)
    assert Settings(**exposure, secret_key=STRONG).secret_key == STRONG
