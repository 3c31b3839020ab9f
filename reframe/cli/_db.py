"""How operator commands open the service's database, and say which one they opened.

They read the same Settings as the service (REFRAME_HOME, REFRAME_DATABASE_URL), so a command
run from any directory finds the data of a service started from anywhere else; each prints
the database it used on stderr (stdout stays for keys and --json), with a warning when it had
to create one, which means it is probably not the running service's.
"""

from __future__ import annotations

# Handlers import what they use when they run, so `reframe --help` and every other command
# stay instant (see reframe/cli/__init__.py).
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from reframe.config import Settings


def describe_database(settings: Settings) -> str:
    """The database URL as it is safe to print: the password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///"))
    return None


def open_database(settings: Settings | None = None) -> tuple[Settings, sessionmaker[Session]]:
    """Migrate and open the service's database, announcing it on stderr."""
    from reframe.config import Settings
    from reframe.db import make_engine, make_sessionmaker, migrate

    settings = settings or Settings()
    url = settings.resolved_database_url
    path = _sqlite_path(url)
    new = path is not None and not path.exists()
    migrate(url)
    print(f"reframe: database {describe_database(settings)}", file=sys.stderr)
    if new:
        print(
            f"reframe: no database was at {path}, so a new, empty one was created there. If a "
            "service is running, it uses another one: run this command with that service's "
            "REFRAME_HOME (or REFRAME_DATABASE_URL).",
            file=sys.stderr,
        )
    return settings, make_sessionmaker(make_engine(url))
