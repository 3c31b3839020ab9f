"""Which credit pool pays for a job."""

from __future__ import annotations

import pytest

from reframe.db.models import CreditPool
from reframe.errors import InsufficientCredits
from reframe.services.jobs import choose_pool
from reframe.services.ledger import Balance


@pytest.mark.parametrize(
    ("free", "paid", "charge", "pool"),
    [
        (30, 10, 10, CreditPool.PAID),  # paid covers exactly: clean
        (30, 9, 10, CreditPool.FREE),  # paid short, free covers: watermarked
        (10, 0, 10, CreditPool.FREE),
        (0, 100, 1, CreditPool.PAID),
    ],
)
def test_choose_pool(free: int, paid: int, charge: int, pool: CreditPool) -> None:
    assert choose_pool(Balance(free=free, paid=paid), charge) is pool


def test_pools_never_mix_and_402_names_the_amounts() -> None:
    with pytest.raises(InsufficientCredits) as info:
        choose_pool(Balance(free=6, paid=5), 8)  # 11 in total, but no single pool covers 8
    assert (info.value.needed, info.value.available) == (8, 6)
    assert "8 xeconds" in info.value.message
    assert "5 paid" in info.value.message
