"""The caller's own account: profile, balance, and API key rotation."""

from __future__ import annotations

from fastapi import APIRouter

from reframe.api.deps import CurrentAccount, SessionDep
from reframe.api.errors import error_responses
from reframe.api.schemas import AccountOut, ApiKeyCreated, ApiKeyInfo, BalanceOut, MeOut
from reframe.services import accounts, ledger
from reframe.services.ledger import Balance

router = APIRouter(prefix="/me", tags=["account"], responses=error_responses(401, 500))


def balance_out(balance: Balance) -> BalanceOut:
    return BalanceOut(
        free_xeconds=balance.free, paid_xeconds=balance.paid, total_xeconds=balance.total
    )


@router.get("", response_model=MeOut, summary="Read your profile, balance, and API key state")
def read_me(account: CurrentAccount, session: SessionDep) -> MeOut:
    from reframe.jobs.webhooks import ensure_webhook_secret

    key = accounts.active_key(session, account.id)
    webhook_secret = ensure_webhook_secret(session, account)
    session.commit()
    return MeOut(
        webhook_secret=webhook_secret,
        account=AccountOut(id=account.id, email=account.email, created_at=account.created_at),
        balance=balance_out(ledger.balance(session, account.id)),
        api_key=ApiKeyInfo(
            prefix=key.prefix, created_at=key.created_at, last_used_at=key.last_used_at
        )
        if key
        else None,
    )


@router.post(
    "/api-key",
    response_model=ApiKeyCreated,
    summary="Create a new API key; the old one stops working",
)
def rotate_api_key(account: CurrentAccount, session: SessionDep) -> ApiKeyCreated:
    issued = accounts.rotate_key(session, account.id)
    session.commit()
    return ApiKeyCreated(
        api_key=issued.plaintext, prefix=issued.record.prefix, created_at=issued.record.created_at
    )
