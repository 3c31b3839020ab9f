"""`reframe accounts create | list | set-password | disable | enable` and `reframe credits grant`:
operator commands.

They work on the service's database (REFRAME_DATABASE_URL, default SQLite under REFRAME_HOME,
see reframe.cli._db), say which one, and migrate it first, so they are usable before the
service has ever started. Disabling, enabling and grants are audited (reframe.services.audit).
"""

from __future__ import annotations

# Handlers import what they use when they run, so `reframe --help` and every other command
# stay instant (see reframe/cli/__init__.py).
import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from reframe.config import Settings
    from reframe.db.models import Account


def register(subparsers: Any) -> None:
    accounts = subparsers.add_parser(
        "accounts", help="create, list, disable, enable accounts; set passwords (operator)"
    )
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

    password = sub.add_parser(
        "set-password",
        help="set an account's studio password (prompted, or read from stdin)",
        description=(
            "Give an account a password for the studio's login page, for example one made with "
            "`accounts create`. On a terminal the password is prompted for twice; otherwise the "
            "first line of standard input is used (`... set-password --email E < file`). The "
            "account's existing studio sessions are ended."
        ),
    )
    password.add_argument("--email", required=True)
    password.set_defaults(handler=_set_password)

    for action, verb in (("disable", "refuse"), ("enable", "accept again")):
        toggle = sub.add_parser(
            action,
            help=f"{verb} an account's API key and studio sessions (audited)",
            description=(
                f"{action.capitalize()} an account: a disabled account's API key and studio "
                "sessions are refused with 403 and its jobs that have not ended keep running "
                "(fail them with `reframe jobs fail`). Audited with --reason; running it "
                "again changes nothing."
            ),
        )
        toggle.add_argument("--email", required=True)
        toggle.add_argument("--reason", required=True, help="why (kept in the audit log)")
        add_operator_argument(toggle)
        toggle.set_defaults(handler=_toggle, disable=action == "disable")

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


def add_operator_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator",
        default=None,
        help="who is acting, for the audit log (default: $REFRAME_OPERATOR, else user@host)",
    )


def operator_of(args: argparse.Namespace) -> str:
    from reframe.services.audit import default_operator

    return str(args.operator or default_operator())


def _sessionmaker() -> tuple[Settings, sessionmaker[Session]]:
    from reframe.cli._db import open_database

    return open_database()


def _create(args: argparse.Namespace) -> int:
    from reframe.services import accounts, ledger

    settings, factory = _sessionmaker()
    with factory() as session:
        account, issued = accounts.create_account(
            session, settings, args.email, free_xeconds=args.free_xeconds
        )
        session.commit()
        bal = ledger.balance(session, account.id)
        returning = args.free_xeconds is None and accounts.had_closed_account(
            session, settings, account.email
        )
    print(f"Created account {account.email} (id {account.id}) with {bal.free} free xeconds.")
    if returning:
        print(
            "This address had an account that was closed, so it gets no second signup gift; "
            "give credits with `reframe credits grant` (or --free-xeconds) if that is intended."
        )
    print("API key (shown once; store it now):")
    print(issued.plaintext)
    return 0


def _read_password() -> str:
    """The new password: prompted twice on a terminal, else stdin's first line."""
    from reframe.errors import InvalidInput

    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise InvalidInput("the two passwords differ; nothing was changed")
        return first
    # Never from argv: command lines end up in shell history and `ps` output.
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def _set_password(args: argparse.Namespace) -> int:
    from reframe.services import accounts, web_auth

    _, factory = _sessionmaker()
    with factory() as session:
        # The account first: a typo in the email should not cost the operator a prompt.
        account = accounts.get_by_email(session, args.email)
        web_auth.set_password(session, account, _read_password())
        # Whoever held a session under the old password should not keep it.
        web_auth.end_all_sessions(session, account.id)
        session.commit()
        email = account.email
    print(f"Password set for {email}; it can log in to the studio at /login.")
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
                    "disabled": account.disabled,
                    # Closed by its owner (DELETE /me): the email is a placeholder by then.
                    "closed_at": account.closed_at.isoformat() if account.closed_at else None,
                    "state": _state(account),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No accounts yet. Create one: reframe accounts create --email you@example.com")
        return 0
    print(f"{'EMAIL':<32} {'FREE':>6} {'PAID':>6}  {'KEY':<18} {'CREATED':<19} STATE")
    for r in rows:
        print(
            f"{r['email']:<32} {r['free_xeconds']:>6} {r['paid_xeconds']:>6}  "
            f"{(r['key_prefix'] or '-') + '...':<18} {r['created_at'][:19]:<19} "
            f"{r['state']}"
        )
    return 0


def _state(account: Account) -> str:
    if account.closed_at is not None:
        return f"closed {account.closed_at.isoformat()[:19]}"
    return "disabled" if account.disabled else "active"


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


def _toggle(args: argparse.Namespace) -> int:
    from reframe.services import accounts

    _, factory = _sessionmaker()
    with factory() as session:
        account = accounts.get_by_email(session, args.email)
        account_id, email = account.id, account.email
        changed = accounts.set_disabled(
            session, account_id, args.disable, operator=operator_of(args), reason=args.reason
        )
    state = "disabled" if args.disable else "enabled"
    if not changed:
        print(f"{email} was already {state}; nothing changed.")
        return 0
    detail = (
        "its API key and studio sessions now get 403"
        if args.disable
        else "its API key and studio sessions work again"
    )
    print(f"{email} is now {state}: {detail}. Recorded in the audit log.")
    return 0
