"""`reframe serve` refuses to listen beyond this machine with a secret anyone can know or guess.

No Ray is started here: `ray.init` is replaced by a stand-in that records the call, so a check
that does not refuse shows up as "Ray would have started" instead of a running service.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reframe.cli import main
from reframe.cli.serve import settings_for, start_service
from reframe.config import MIN_SECRET_LENGTH, UnsafeConfiguration

# Listening on every interface is exactly what these tests are about.
ALL = "0.0.0.0"  # noqa: S104


class RayWouldStart(Exception):
    """Raised by the stand-in for ray.init: the safety checks let the service through."""


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise RayWouldStart

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    for name in ("REFRAME_SECRET_KEY", "REFRAME_PUBLIC_BASE_URL", "REFRAME_ENV", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFRAME_DATA_DIR", str(tmp_path / "var"))
    # The port check looks for another Ray on this machine; it is not what is tested here.
    monkeypatch.setattr("reframe.cli.serve.check_local_ray_ports", lambda: None)


@pytest.mark.parametrize("host", [ALL, "::", "", "192.0.2.10", "reframe.example.com"])
@pytest.mark.usefixtures("no_ray")
def test_development_secret_is_refused_on_any_non_loopback_host(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the public URL says (loopback here, as behind a proxy on the same machine):
    # the address the service listens on decides who can reach it.
    monkeypatch.setenv("REFRAME_PUBLIC_BASE_URL", "http://127.0.0.1:8000")
    with pytest.raises(UnsafeConfiguration, match="development secret") as caught:
        start_service(settings_for(host, 8000), host, 8000)
    assert "REFRAME_SECRET_KEY" in caught.value.message
    assert "secrets.token_urlsafe" in caught.value.message


@pytest.mark.usefixtures("no_ray")
def test_short_secret_is_refused_on_a_non_loopback_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFRAME_SECRET_KEY", "s" * (MIN_SECRET_LENGTH - 1))
    with pytest.raises(UnsafeConfiguration, match=f"at least {MIN_SECRET_LENGTH} characters"):
        start_service(settings_for(ALL, 8000), ALL, 8000)


@pytest.mark.usefixtures("no_ray")
def test_a_long_secret_on_any_host_and_any_secret_on_loopback_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(RayWouldStart):
        start_service(settings_for("127.0.0.1", 8000), "127.0.0.1", 8000)
    with pytest.raises(RayWouldStart):
        start_service(settings_for("localhost", 8000), "localhost", 8000)
    monkeypatch.setenv("REFRAME_SECRET_KEY", "s" * MIN_SECRET_LENGTH)
    with pytest.raises(RayWouldStart):
        start_service(settings_for(ALL, 8000), ALL, 8000)


@pytest.mark.usefixtures("no_ray")
def test_the_command_says_why_and_how_to_fix_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", ALL, "--port", "8000"]) == 2
    err = capsys.readouterr().err
    assert "development secret" in err
    assert "secrets.token_urlsafe" in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_ray")
def test_a_bad_environment_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFRAME_ENV", "production")
    monkeypatch.setenv("REFRAME_SECRET_KEY", "short")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"at least {MIN_SECRET_LENGTH} characters" in err
    assert "Traceback" not in err
