"""`reframe jobs list | show | fail | refund` and `reframe ledger show`: operator commands.

`fail` and `refund` go through the job lifecycle (reframe.jobs.lifecycle), the one writer of a
job's state, so the refund rules hold (one refund entry per job, never more than was charged);
each is audited with the operator's reason, which also lands in the job's events (its owner
reads them) and in the ledger note, and running either again changes nothing.
"""

from __future__ import annotations

# Handlers import what they use when they run, so `reframe --help` and every other command
# stay instant (see reframe/cli/__init__.py).
import argparse
import json
from typing import TYPE_CHECKING, Any

from reframe.cli.accounts import add_operator_argument, operator_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from reframe.db.models import Job


def register(subparsers: Any) -> None:
    jobs = subparsers.add_parser("jobs", help="list, inspect, fail and refund jobs (operator)")
    sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="jobs, newest first")
    listing.add_argument("--email", default=None, help="only this account's jobs")
    listing.add_argument(
        "--status", action="append", default=None, help="only jobs in this status (repeatable)"
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=_list)

    show = sub.add_parser("show", help="one job: fields, events, ledger entries, audit log")
    show.add_argument("job_id", metavar="JOB")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(handler=_show)

    _add_action(
        sub,
        "fail",
        _fail,
        "fail a job that has not ended, refunding it in full (audited)",
        "Fail a queued or running job through the job lifecycle: it ends `failed`, its charge "
        "is refunded in full, and a running render is stopped by its dispatcher. The reason is "
        "shown to the job's owner (in its error and events) and kept in the audit log. A job "
        "that already failed is left alone.",
    )
    _add_action(
        sub,
        "refund",
        _refund,
        "refund what is left of an ended job's charge (audited)",
        "Give back the xeconds of an ended job (done, or cancelled with a partial refund) that "
        "were not refunded yet, to the pool it was paid from. The reason lands in the ledger "
        "note, the job's events (its owner reads them) and the audit log. Nothing happens when "
        "nothing is left to refund.",
    )

    ledger = subparsers.add_parser("ledger", help="an account's credit ledger (operator)")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    lshow = lsub.add_parser("show", help="every ledger entry of an account, with balances")
    lshow.add_argument("--email", required=True)
    lshow.add_argument("--json", action="store_true", help="print a JSON object")
    lshow.set_defaults(handler=_ledger)


def _add_action(sub: Any, name: str, handler: Any, summary: str, description: str) -> None:
    action = sub.add_parser(name, help=summary, description=description)
    action.add_argument("job_id", metavar="JOB")
    action.add_argument("--reason", required=True, help="why; shown to the job's owner")
    add_operator_argument(action)
    action.set_defaults(handler=handler)


def _job_row(job: Job, email: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "email": email,
        "status": job.status.value,
        "target_fps": job.target_fps,
        "duration_sec": job.duration_sec,
        "charged_xeconds": job.charged_xeconds,
        "payment_kind": job.payment_kind.value,
        "refunded_xeconds": job.refunded_xeconds,
        "attempts": job.attempts,
        "frames_done": job.frames_done,
        "frames_total": job.frames_total,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def _find_job(session: Session, job_id: str) -> tuple[Job, str]:
    from reframe.db.models import Account, Job
    from reframe.errors import NotFound

    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}; `reframe jobs list` shows the job ids")
    account = session.get(Account, job.account_id)
    return job, account.email if account else "?"


def _list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from reframe.cli._db import open_database
    from reframe.db.models import Account, Job, JobStatus
    from reframe.errors import InvalidInput
    from reframe.services import accounts

    try:
        statuses = [JobStatus(s) for s in args.status or []]
    except ValueError as exc:
        raise InvalidInput(f"{exc}; statuses are {', '.join(s.value for s in JobStatus)}") from None
    _, factory = open_database()
    with factory() as session:
        query = (
            select(Job, Account.email)
            .join(Account, Account.id == Job.account_id)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(max(1, args.limit))
        )
        if args.email:
            query = query.where(Job.account_id == accounts.get_by_email(session, args.email).id)
        if statuses:
            query = query.where(Job.status.in_(statuses))
        rows = [_job_row(job, email) for job, email in session.execute(query).all()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No jobs match.")
        return 0
    print(
        f"{'JOB':<32} {'STATUS':<10} {'EMAIL':<28} {'FPS':>4} {'CHARGED':>7} {'REFUND':>6} CREATED"
    )
    for r in rows:
        print(
            f"{r['id']:<32} {r['status']:<10} {r['email'][:28]:<28} {r['target_fps']:>4} "
            f"{r['charged_xeconds']:>7} {r['refunded_xeconds']:>6} {r['created_at'][:19]}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from reframe.cli._db import open_database
    from reframe.db.models import LedgerEntry
    from reframe.services import audit

    _, factory = open_database()
    with factory() as session:
        job, email = _find_job(session, args.job_id)
        data = _job_row(job, email)
        data["events"] = [
            {"status": e.status.value, "at": e.at.isoformat(), "message": e.message}
            for e in job.events
        ]
        data["ledger"] = [
            {
                "at": e.created_at.isoformat(),
                "reason": e.reason.value,
                "pool": e.pool.value,
                "delta": e.delta,
                "note": e.note,
            }
            for e in session.scalars(
                select(LedgerEntry).where(LedgerEntry.job_id == job.id).order_by(LedgerEntry.id)
            )
        ]
        data["audit"] = [
            {"at": a.at.isoformat(), "operator": a.operator, "action": a.action, "reason": a.reason}
            for a in audit.entries(session, job_id=job.id)
        ]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"job {data['id']} ({data['email']}): {data['status']}")
    print(
        f"  {data['target_fps']} fps, {data['duration_sec']:.2f} s; charged "
        f"{data['charged_xeconds']} {data['payment_kind']}, refunded {data['refunded_xeconds']}; "
        f"attempts {data['attempts']}; frames {data['frames_done']}/{data['frames_total']}"
    )
    if data["error"]:
        print(f"  error: {data['error']}")
    print("events:")
    for e in data["events"]:
        print(f"  {e['at'][:19]}  {e['status']:<10} {e['message'] or ''}")
    print("ledger:")
    for e in data["ledger"]:
        note = e["note"] or ""
        print(f"  {e['at'][:19]}  {e['reason']:<10} {e['pool']:<4} {e['delta']:>+6}  {note}")
    if data["audit"]:
        print("audit:")
        for a in data["audit"]:
            print(f"  {a['at'][:19]}  {a['action']:<12} {a['operator']}: {a['reason']}")
    return 0


def _lifecycle() -> Any:
    from reframe.cli._db import open_database
    from reframe.jobs.events import event_bus
    from reframe.jobs.lifecycle import JobLifecycle
    from reframe.jobs.progress import progress_store

    settings, factory = open_database()
    # With Redis the status event wakes the dispatcher now; without, it sees the change at its
    # next poll (REFRAME_DISPATCH_POLL_SEC).
    return JobLifecycle(factory, bus=event_bus(settings), progress=progress_store(settings))


def _fail(args: argparse.Namespace) -> int:
    life = _lifecycle()
    settled = life.operator_fail(args.job_id, args.reason, operator=operator_of(args))
    if not settled.changed:
        print(f"job {args.job_id} had already failed; nothing changed.")
        return 0
    print(
        f"job {args.job_id} failed; {settled.refunded} xeconds refunded. Recorded in its "
        "events and the audit log."
    )
    return 0


def _refund(args: argparse.Namespace) -> int:
    life = _lifecycle()
    amount = life.operator_refund(args.job_id, args.reason, operator=operator_of(args))
    if amount == 0:
        print(f"job {args.job_id} has nothing left to refund; nothing changed.")
        return 0
    print(
        f"job {args.job_id}: {amount} xeconds refunded. Recorded in the ledger, its events and "
        "the audit log."
    )
    return 0


def _ledger(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from reframe.cli._db import open_database
    from reframe.db.models import CreditPool, LedgerEntry
    from reframe.services import accounts, audit

    _, factory = open_database()
    running = dict.fromkeys(CreditPool, 0)
    entries: list[dict[str, Any]] = []
    with factory() as session:
        account = accounts.get_by_email(session, args.email)
        for entry in session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account.id)
            .order_by(LedgerEntry.created_at, LedgerEntry.id)
        ):
            running[entry.pool] += entry.delta
            entries.append(
                {
                    "id": entry.id,
                    "at": entry.created_at.isoformat(),
                    "reason": entry.reason.value,
                    "pool": entry.pool.value,
                    "delta": entry.delta,
                    "job_id": entry.job_id,
                    "note": entry.note,
                    "balance_free": running[CreditPool.FREE],
                    "balance_paid": running[CreditPool.PAID],
                }
            )
        audits = [
            {"at": a.at.isoformat(), "operator": a.operator, "action": a.action, "reason": a.reason}
            for a in audit.entries(session, account_id=account.id)
        ]
        email, disabled = account.email, account.disabled
    data: dict[str, Any] = {
        "email": email,
        "disabled": disabled,
        "balance": {"free": running[CreditPool.FREE], "paid": running[CreditPool.PAID]},
        "entries": entries,
        "audit": audits,
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    state = " (disabled)" if disabled else ""
    print(f"ledger of {email}{state}")
    print(
        f"{'WHEN':<19}  {'REASON':<10} {'POOL':<4} {'DELTA':>6} {'FREE':>6} {'PAID':>6}  JOB / NOTE"
    )
    for e in entries:
        what = " ".join(x for x in (e["job_id"], e["note"]) if x)
        print(
            f"{e['at'][:19]:<19}  {e['reason']:<10} {e['pool']:<4} {e['delta']:>+6} "
            f"{e['balance_free']:>6} {e['balance_paid']:>6}  {what}"
        )
    print(
        f"balance: {data['balance']['paid']} paid + {data['balance']['free']} free = "
        f"{data['balance']['paid'] + data['balance']['free']} xeconds"
    )
    if audits:
        print("audit:")
        for a in audits:
            print(f"  {a['at'][:19]}  {a['action']:<16} {a['operator']}: {a['reason']}")
    return 0
