"""The API's dependencies under the names the page routes use; one session rule for both."""

from __future__ import annotations

from reframe.api.deps import SessionDep as DbDep
from reframe.api.deps import SettingsDep, StorageDep

__all__ = ["DbDep", "SettingsDep", "StorageDep"]
