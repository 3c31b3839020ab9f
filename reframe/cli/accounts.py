"""`reframe accounts create | list` and `reframe credits grant`: operator commands.

They work on the database named by REFRAME_DATABASE_URL (default: SQLite under REFRAME_DATA_DIR)
and migrate it first, so they are usable before the service has ever started.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from reframe.config import Settings


def register(subparsers: Any) -> None:
    accounts = subparsers.add_parser("accounts", help="create and list accounts (operator)")
    sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")

    create = sub.add_parser(
        "create",
        help="create an account and print its API key (shown once)",
        description="Create an account with its first API key and its signup free xeconds.",
    )
    create.add_argument("--email", required=True)
    create.add_argument(
        "--free-xeconds",
        type=int,
        default=None,
        help="free xeconds to start with (default: REFRAME_FREE_XECONDS_ON_SIGNUP, 30)",
    )
    create.set_defaults(handler=_create)

    listing = sub.add_parser("list", help="list accounts with their balances")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=_list)

    credits = subparsers.add_parser("credits", help="grant xeconds to an account (operator)")
    csub = credits.add_subparsers(dest="credits_command", required=True, metavar="ACTION")
    grant = csub.add_parser("grant", help="add paid or free xeconds to an account")
    grant.add_argument("--email", required=True)
    grant.add_argument("--xeconds", type=int, required=True)
    grant.add_argument("--kind", choices=["paid", "free"], required=True)
    grant.add_argument("--note", default=None, help="why (kept in the ledger)")
    grant.set_defaults(handler=_grant)


def _sessionmaker() -> tuple[Settings, sessionmaker[Session]]:
    from reframe.config import Settings
    from reframe.db import make_engine, make_sessionmaker, migrate

    settings = Settings()
    url = settings.resolved_database_url
    migrate(url)
    return settings, make_sessionmaker(make_engine(url))


def _create(args: argparse.Namespace) -> int:
    from reframe.services import accounts, ledger

    settings, factory = _sessionmaker()
    with factory() as session:
        account, issued = accounts.create_account(
            session, settings, args.email, free_xeconds=args.free_xeconds
        )
        session.commit()
        bal = ledger.balance(session, account.id)
    print(f"Created account {account.email} (id {account.id}) with {bal.free} free xeconds.")
    print("API key (shown once; store it now):")
    print(issued.plaintext)
    return 0


def _list(args: argparse.Namespace) -> int:
    from reframe.services import accounts, ledger

    _, factory = _sessionmaker()
    rows: list[dict[str, Any]] = []
    with factory() as session:
        for account in accounts.list_accounts(session):
            bal = ledger.balance(session, account.id)
            key = accounts.active_key(session, account.id)
            rows.append(
                {
                    "id": account.id,
                    "email": account.email,
                    "created_at": account.created_at.isoformat(),
                    "free_xeconds": bal.free,
                    "paid_xeconds": bal.paid,
                    "key_prefix": key.prefix if key else None,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No accounts yet. Create one: reframe accounts create --email you@example.com")
        return 0
    print(f"{'EMAIL':<32} {'FREE':>6} {'PAID':>6}  {'KEY':<18} CREATED")
    for r in rows:
        print(
            f"{r['email']:<32} {r['free_xeconds']:>6} {r['paid_xeconds']:>6}  "
            f"{(r['key_prefix'] or '-') + '...':<18} {r['created_at'][:19]}"
        )
    return 0


def _grant(args: argparse.Namespace) -> int:
    from reframe.db.models import CreditPool
    from reframe.services import accounts, ledger

    _, factory = _sessionmaker()
    with factory() as session:
        account = accounts.get_by_email(session, args.email)
        ledger.grant(session, account.id, args.xeconds, CreditPool(args.kind), note=args.note)
        session.commit()
        bal = ledger.balance(session, account.id)
    print(
        f"Granted {args.xeconds} {args.kind} xeconds to {account.email}; balance now "
        f"{bal.paid} paid + {bal.free} free = {bal.total} xeconds."
    )
    return 0
