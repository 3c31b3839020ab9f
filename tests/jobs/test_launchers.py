from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reframe.config import SECRET_FIELDS, Settings
from reframe.jobs.launchers import settings_env, submission_id_for


def test_settings_survive_the_trip_through_the_environment() -> None:
    settings = Settings(
        max_attempts=5, webhook_allow_private=True, redis_url="redis://h:1/0", lease_sec=2.5
    )
    env = settings_env(settings)
    code = "import json; from reframe.config import Settings; print(Settings().model_dump_json())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == json.loads(settings.model_dump_json())


def test_secrets_can_be_left_out() -> None:
    settings = Settings(
        secret_key="x" * 40,
        s3_secret_access_key="hush",
        s3_access_key_id="id",
        metrics_token="scrape-token",
    )
    env = settings_env(settings, exclude=SECRET_FIELDS)
    assert not {"REFRAME_SECRET_KEY", "REFRAME_S3_SECRET_ACCESS_KEY"} & set(env)
    assert "hush" not in json.dumps(env)
    assert "scrape-token" not in json.dumps(env)
    assert settings_env(settings)["REFRAME_SECRET_KEY"] == "x" * 40


def test_submission_ids_are_stable_per_attempt() -> None:
    assert submission_id_for("abc", 2) == "reframe-abc-a2" == submission_id_for("abc", 2)
    assert submission_id_for("abc", 1) != submission_id_for("abc", 2)


def test_credentials_in_urls_never_reach_ray_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 10: a render's Ray job environment is shown in the dashboard and kept in
    the GCS; a database or Redis URL with a password must not be in it."""
    from reframe.jobs.launchers import RayJobLauncher

    monkeypatch.setenv("REFRAME_SECRETS_DIR", "/run/reframe-secrets")
    settings = Settings(
        database_url="postgresql+psycopg://render:hunter2@db.internal/reframe",
        redis_url="redis://:s3cr3t-redis@cache.internal:6379/0",
        secret_key="k" * 40,
    )
    env = RayJobLauncher.runtime_env_vars(settings, "token")
    text = json.dumps(env)
    for secret in ("hunter2", "s3cr3t-redis", "k" * 40):
        assert secret not in text
    # The driver finds them where the service keeps them, and everything else as before.
    assert env["REFRAME_SECRETS_DIR"] == "/run/reframe-secrets"
    assert env["RAY_AUTH_MODE"] == "token"
    # URLs without credentials are plain configuration and still travel.
    plain = Settings(database_url="postgresql+psycopg://db.internal/reframe")
    assert RayJobLauncher.runtime_env_vars(plain, "token")["REFRAME_DATABASE_URL"].endswith(
        "/reframe"
    )
