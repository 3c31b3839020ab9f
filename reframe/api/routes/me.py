"""The caller's own account: profile, balance, where the credits went, and API key rotation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from reframe.api.deps import (
    CurrentAccount,
    LifecycleDep,
    PageDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from reframe.api.errors import error_responses
from reframe.api.schemas import (
    AccountOut,
    ApiKeyCreatedOut,
    ApiKeyOut,
    BalanceOut,
    LedgerEntryOut,
    LedgerPageOut,
    MeOut,
)
from reframe.services import accounts, deletion, ledger
from reframe.services.ledger import Balance
from reframe.services.webhooks import ensure_webhook_secret

router = APIRouter(prefix="/me", tags=["account"], responses=error_responses(401, 500))


def balance_out(balance: Balance) -> BalanceOut:
    return BalanceOut.model_validate(balance)


@router.get("", response_model=MeOut, summary="Read your profile, balance, and API key state")
def read_me(account: CurrentAccount, session: SessionDep) -> MeOut:

    key = accounts.active_key(session, account.id)
    webhook_secret = ensure_webhook_secret(session, account)
    session.commit()
    return MeOut(
        webhook_secret=webhook_secret,
        account=AccountOut(id=account.id, email=account.email, created_at=account.created_at),
        balance=balance_out(ledger.balance(session, account.id)),
        api_key=ApiKeyOut(
            prefix=key.prefix, created_at=key.created_at, last_used_at=key.last_used_at
        )
        if key
        else None,
    )


@router.get(
    "/ledger",
    response_model=LedgerPageOut,
    summary="List where your credits went: grants, signup credit, charges, refunds, cancels",
    description=(
        "Every xecond in or out of your balance, newest first, paginated like GET /jobs "
        "(`limit`, `offset`, `next_offset`). Each entry has its signed amount, the pool it "
        "moved (free or paid), the job it belongs to and when. The sum of all entries of a "
        "pool is that pool's balance, returned alongside as `balance`."
    ),
    responses=error_responses(400),
)
def read_ledger(
    account: CurrentAccount,
    session: SessionDep,
    window: PageDep,
) -> LedgerPageOut:
    page = ledger.history(session, account.id, window)
    items = [LedgerEntryOut.model_validate(line) for line in page.rows]
    return LedgerPageOut.of(page, items, balance=balance_out(ledger.balance(session, account.id)))


@router.post(
    "/api-key",
    response_model=ApiKeyCreatedOut,
    summary="Create a new API key; the old one stops working",
)
def rotate_api_key(account: CurrentAccount, session: SessionDep) -> ApiKeyCreatedOut:
    issued = accounts.rotate_key(session, account.id)
    session.commit()
    return ApiKeyCreatedOut(
        api_key=issued.plaintext, prefix=issued.record.prefix, created_at=issued.record.created_at
    )


@router.delete(
    "",
    status_code=204,
    response_class=Response,
    summary="Close your account: delete all its projects; the API key stops working",
    description=(
        "Deletes every project as DELETE /projects/{id} does (queued and running renders are "
        "cancelled with the usual refund first), revokes the API key (it answers 401 from "
        "then on) and ends studio sessions. The account's email and other personal data are "
        "removed; its credit ledger is kept, anonymized, for accounting, and any balance left "
        "is forfeited. A closed account cannot be opened again. `confirm` must repeat the "
        "account's email, or nothing happens (400)."
    ),
    responses=error_responses(400),
)
def close_account(
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    lifecycle: LifecycleDep,
    confirm: Annotated[
        str | None,
        Query(
            max_length=320,
            description="The account's email (as GET /me shows it), to confirm the closure",
        ),
    ] = None,
) -> Response:
    deletion.close_account(session, storage, settings, lifecycle, account, confirm)
    return Response(status_code=204)
