"""One page of a listing: its rows, how many rows there are in all, and where the next page starts.

Every list (GET /jobs, /projects, /me/ledger) pages the same way, by `limit` and `offset` over a
newest-first order; this is the one place that counts, slices and says whether a page is last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func
from sqlalchemy.orm import Session

R = TypeVar("R")
S = TypeVar("S")


@dataclass(frozen=True)
class Window:
    """Which page a client asked for."""

    limit: int
    offset: int


@dataclass(frozen=True)
class PageSlice(Generic[R]):
    rows: Sequence[R]
    total: int
    window: Window

    @property
    def next_offset(self) -> int | None:
        """Where the next page starts; None on the last page."""
        end = self.window.offset + len(self.rows)
        return end if end < self.total else None

    def map(self, convert: Callable[[R], S]) -> PageSlice[S]:
        return PageSlice([convert(row) for row in self.rows], self.total, self.window)


def fetch_page(session: Session, query: Select[*tuple[Any, ...]], window: Window) -> PageSlice[Any]:
    """`query`'s rows in `window`, and the count of all its rows.

    A query of one entity gives the entities; one of several gives row tuples. The count runs on
    the same query's FROM and WHERE, so the two can never disagree on what is listed.
    """
    counted = query.order_by(None).with_only_columns(func.count(), maintain_column_froms=True)
    total = session.scalar(counted)
    page = query.limit(window.limit).offset(window.offset)
    if len(query.column_descriptions) == 1:
        rows: Sequence[Any] = session.scalars(page).all()
    else:
        rows = session.execute(page).all()
    return PageSlice(list(rows), int(total or 0), window)
