"""How the dispatcher starts a render attempt: as a Ray job (production) or a local process.

Both run the same command, `python pipelines/render.py --job-id ID --attempt N`, with the
service's settings passed as REFRAME_* variables, and both answer "what became of attempt X".
`RayJobLauncher` makes every render visible in the Ray dashboard; `SubprocessLauncher` serves
machines without a Ray dashboard and the dispatcher's own tests.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.options import RenderOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
RENDER_SCRIPT = REPO_ROOT / "pipelines" / "render.py"


class LaunchState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # the launcher has no record (for example after a restart)

    @property
    def alive(self) -> bool:
        return self in (LaunchState.PENDING, LaunchState.RUNNING)


@dataclass(frozen=True)
class LaunchInfo:
    """`message` is short enough to show a customer; `logs` is the output tail for operators."""

    state: LaunchState
    message: str | None = None
    logs: str | None = None


class LaunchUnavailable(Exception):
    """The cluster cannot take a render right now (its job API is still starting, it is
    unreachable, no process can be started): waiting for capacity, not a failed attempt."""


class RenderLauncher(Protocol):
    def submit(self, job_id: str, attempt: int, options: RenderOptions) -> str:
        """Start attempt `attempt` of `job_id`; returns a submission id for `info`/`stop`.

        Raises `LaunchUnavailable` when the cluster cannot take it now; anything else is a
        failed attempt.
        """
        ...

    def info(self, submission_id: str) -> LaunchInfo: ...

    def stop(self, submission_id: str) -> None: ...


def submission_id_for(job_id: str, attempt: int) -> str:
    # Deterministic, so a dispatcher that restarts can find (and adopt) an attempt it started.
    return f"reframe-{job_id}-a{attempt}"


def render_command(
    job_id: str, attempt: int, options: RenderOptions, python: str = sys.executable
) -> list[str]:
    return [
        python,
        str(RENDER_SCRIPT),
        "--job-id",
        job_id,
        "--attempt",
        str(attempt),
        *options.to_argv(),
    ]


# A Ray job's runtime_env is shown in the Ray dashboard, so secrets do not travel in it: the
# render driver reads them from its own environment (inherited from `reframe serve` on a local
# cluster; set on the nodes of a real one, see cluster.yaml).
SECRET_FIELDS = frozenset(
    {"secret_key", "s3_access_key_id", "s3_secret_access_key", "metrics_token"}
)


def settings_env(settings: Settings, *, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """REFRAME_* variables that reproduce `settings` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name in exclude:
            continue
        if isinstance(value, dict | list):
            # pydantic-settings reads complex fields from the environment as JSON.
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        env[f"REFRAME_{name.upper()}"] = text
    return env


def _tail(text: str, limit: int = 1500) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    out = "\n".join(lines[-12:])
    return out[-limit:]


def _last_line(text: str, limit: int = 300) -> str:
    """The line a crash ends with (usually `SomeError: what went wrong`)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


class SubprocessLauncher:
    """Runs each attempt as a child process of the dispatcher, output kept in a log file."""

    def __init__(
        self,
        settings: Settings,
        *,
        command: Any = render_command,
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self._env = {**os.environ, **settings_env(settings), **(extra_env or {})}
        self._command = command
        self._log_dir = log_dir
        self._lock = threading.Lock()
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def submit(self, job_id: str, attempt: int, options: RenderOptions) -> str:
        sid = submission_id_for(job_id, attempt)
        log_dir = self._log_dir or Path(tempfile.gettempdir()) / "reframe-renders"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{sid}.log"
        with log_path.open("wb") as log:
            try:
                proc = subprocess.Popen(
                    self._command(job_id, attempt, options),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    cwd=REPO_ROOT,
                    start_new_session=True,  # stop() signals the render and its children
                )
            except OSError as exc:  # no interpreter, no processes left, ...
                raise LaunchUnavailable(f"cannot start a render process: {exc}") from exc
        with self._lock:
            self._procs[sid] = (proc, log_path)
        return sid

    def pid(self, submission_id: str) -> int | None:
        with self._lock:
            entry = self._procs.get(submission_id)
        return entry[0].pid if entry else None

    def info(self, submission_id: str) -> LaunchInfo:
        with self._lock:
            entry = self._procs.get(submission_id)
        if entry is None:
            return LaunchInfo(LaunchState.UNKNOWN, "the render process is not known here")
        proc, log_path = entry
        code = proc.poll()
        if code is None:
            return LaunchInfo(LaunchState.RUNNING)
        if code == 0:
            return LaunchInfo(LaunchState.SUCCEEDED)
        try:
            output = log_path.read_text(errors="replace")
        except OSError:
            output = ""
        if code < 0:
            name = signal.Signals(-code).name
            return LaunchInfo(
                LaunchState.FAILED, f"the render process was killed by {name}", _tail(output)
            )
        last = _last_line(output)
        return LaunchInfo(
            LaunchState.FAILED,
            f"the render process exited with {code}" + (f" ({last})" if last else ""),
            _tail(output),
        )

    def stop(self, submission_id: str) -> None:
        with self._lock:
            entry = self._procs.get(submission_id)
        if entry is None or entry[0].poll() is not None:
            return
        proc = entry[0]
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


_RAY_STATES = {
    "PENDING": LaunchState.PENDING,
    "RUNNING": LaunchState.RUNNING,
    "SUCCEEDED": LaunchState.SUCCEEDED,
    "FAILED": LaunchState.FAILED,
    "STOPPED": LaunchState.STOPPED,
}


class RayJobLauncher:
    """Submits each attempt as a Ray job through the dashboard's job API.

    Auth: Ray 2.60 turns on token auth by default and the job API then refuses clients that
    were not told so. The mode is passed explicitly (`auth_mode`, normally what the process
    that started Ray runs with) to this client and to each render's environment, instead of
    depending on whatever `~/.ray` holds from an earlier run.
    """

    def __init__(
        self,
        settings: Settings,
        address: str,
        *,
        auth_mode: str,
        entrypoint_num_cpus: float = 0.0,
        submit_timeout_sec: float = 60.0,
    ) -> None:
        os.environ["RAY_AUTH_MODE"] = auth_mode
        from ray.job_submission import JobSubmissionClient

        self._client = JobSubmissionClient(address)
        self._env = {
            **settings_env(settings, exclude=SECRET_FIELDS),
            "RAY_AUTH_MODE": auth_mode,
        }
        self._cpus = entrypoint_num_cpus
        self._submit_timeout = submit_timeout_sec

    def submit(self, job_id: str, attempt: int, options: RenderOptions) -> str:
        sid = submission_id_for(job_id, attempt)
        deadline = time.monotonic() + self._submit_timeout
        while True:
            try:
                return str(
                    self._client.submit_job(
                        # The interpreter running this actor: the install's virtualenv, which
                        # cluster nodes share at the same path (cluster.yaml).
                        entrypoint=shlex.join(render_command(job_id, attempt, options)),
                        submission_id=sid,
                        runtime_env={"env_vars": self._env, "working_dir": None},
                        entrypoint_num_cpus=self._cpus,
                        metadata={"reframe_job_id": job_id, "attempt": str(attempt)},
                    )
                )
            except OSError as exc:  # requests' connection errors and timeouts are OSErrors
                raise LaunchUnavailable(f"the Ray job API is unreachable: {exc}") from exc
            except RuntimeError as exc:
                text = str(exc)
                if "already exists" in text:  # submitted before a restart: adopt it
                    return sid
                if "status code 5" in text:  # the dashboard is overloaded or restarting
                    raise LaunchUnavailable(f"the Ray job API is not answering: {exc}") from exc
                # Right after Ray starts, the job agent is not up yet; anything else is real.
                if "No available agent" not in text:
                    raise
                if time.monotonic() > deadline:
                    raise LaunchUnavailable(f"Ray's job agent is not up: {exc}") from exc
                time.sleep(1.0)

    def info(self, submission_id: str) -> LaunchInfo:
        try:
            details = self._client.get_job_info(submission_id)
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                return LaunchInfo(LaunchState.UNKNOWN, "Ray has no record of this render")
            raise
        state = _RAY_STATES.get(str(details.status), LaunchState.UNKNOWN)
        if state is not LaunchState.FAILED:
            return LaunchInfo(state, details.message)
        try:
            logs = self._client.get_job_logs(submission_id)
        except RuntimeError:
            logs = ""
        # Ray's own message embeds the whole log; the customer gets its first line and the
        # last line of the driver's output, operators the tail.
        headline = (details.message or "the render driver failed").splitlines()[0]
        headline = headline.split(", last available logs", 1)[0]
        last = _last_line(logs)
        return LaunchInfo(state, headline + (f" ({last})" if last else ""), _tail(logs))

    def stop(self, submission_id: str) -> None:
        # Raises when the job is already gone: then there is nothing to stop.
        with contextlib.suppress(RuntimeError):
            self._client.stop_job(submission_id)
