"""`reframe-client`: the API from a terminal.

    reframe-client render clip.mp4 --fps 60 -o smooth.mp4
    reframe-client estimate clip.mp4 --fps 60 120 240
    reframe-client jobs | jobs JOB_ID | download JOB_ID -o out.mp4 | share PROJECT_ID | me
    reframe-client delete PROJECT_ID | close-account --confirm you@example.com

The key comes from --api-key or $REFRAME_API_KEY, the service from --api-url or
$REFRAME_API_URL (default http://127.0.0.1:8000). Progress goes to stderr, results to stdout
(`--json` for machine-readable output). Exit status: 0 done, 1 an API error or a failed render,
2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from reframe_client import models as m
from reframe_client._core import DEFAULT_BASE_URL, VERSION
from reframe_client.client import Reframe
from reframe_client.errors import ReframeError, RenderFailed

Handler = Callable[[Reframe, argparse.Namespace, Console, Console], int]


# --- output -----------------------------------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _print_json(out: Console, value: object) -> None:
    data = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value  # type: ignore[arg-type]
    # print() rather than rich: JSON must reach pipes byte for byte, never wrapped or styled.
    print(json.dumps(data, default=_plain, indent=2), file=out.file)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    whole = max(0, round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


class _DetailColumn(ProgressColumn):
    """Bytes and speed for transfers; frames, the server's ETA and status for the render."""

    def render(self, task: Task) -> Text:
        if task.fields.get("kind") == "frames":
            total = "?" if task.total is None else f"{int(task.total)}"
            eta = task.fields.get("eta")
            parts = [f"{int(task.completed)}/{total} frames"]
            if eta is not None:
                parts.append(f"ETA {_duration(eta)}")
            parts.append(str(task.fields.get("status", "")))
            return Text(" · ".join(p for p in parts if p))
        done = decimal(int(task.completed))
        total_bytes = "?" if task.total is None else decimal(int(task.total))
        speed = f" · {decimal(int(task.speed))}/s" if task.speed else ""
        return Text(f"{done}/{total_bytes}{speed}")


def _progress(err: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        TaskProgressColumn(),
        _DetailColumn(),
        console=err,
    )


# --- commands ---------------------------------------------------------------------------------


def cmd_render(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    source = Path(args.input)
    with _progress(err) as bars:
        upload = bars.add_task("upload", total=source.stat().st_size, kind="bytes")
        render = bars.add_task(
            "render", total=None, kind="frames", status="waiting for upload", eta=None
        )
        download = bars.add_task("download", total=None, kind="bytes", visible=False)

        def on_upload(sent: int, total: int) -> None:
            bars.update(upload, completed=sent, total=total)

        def on_estimate(estimate: m.VideoEstimate, quote: m.VideoOptionQuote | None) -> None:
            video = estimate.video
            price = "not allowed" if quote is None or not quote.allowed else _price(quote)
            if args.preview is not False and quote is not None and quote.allowed:
                price = "a preview (its price is shown when the job starts)"
            bars.console.print(
                f"{source.name}: {video.width}x{video.height}, {video.fps:g} fps, "
                f"{video.duration_sec:.2f} s -> {args.fps} fps: {price}"
            )
            bars.update(render, status="starting")

        def on_progress(job: m.Job) -> None:
            total = job.frames_total
            done = job.frames_done or 0
            if job.live_status is m.JobStatus.DONE and total:
                done = total
            bars.update(
                render,
                total=total,
                completed=done,
                status=job.live_status.value,
                eta=job.eta_sec if job.live_status is m.JobStatus.PROCESSING else None,
            )

        def on_download(received: int, total: int | None) -> None:
            bars.update(download, completed=received, total=total, visible=True)

        result = client.render(
            source,
            args.fps,
            args.output,
            webhook_url=args.webhook_url,
            preview=args.preview,
            output_format=output_choices(args),
            playback_fps=args.playback_fps,
            on_upload=on_upload,
            on_estimate=on_estimate,
            on_progress=on_progress,
            on_download=on_download,
            poll_interval=args.poll_interval,
            timeout=args.timeout,
        )
    job = result.job
    if args.json:
        _print_json(out, {"output": result.output, "job": dataclasses.asdict(job)})
    else:
        out.print(
            f"saved {result.output}: {job.frames_total} frames at {job.target_fps} fps "
            f"(job {job.job_id}, project {job.project_id}, {job.charged_xeconds} xeconds"
            f"{', watermarked' if job.watermarked else ''}"
            f"{f', a {job.preview_seconds:g} s preview' if job.preview_seconds else ''})"
        )
    return 0


def output_choices(args: argparse.Namespace) -> m.OutputBody | None:
    """`--container`, `--codec`, `--quality`, `--no-audio` as the job's `output` (None: all
    the server's defaults)."""
    chosen: m.OutputBody = {}
    if args.container:
        chosen["container"] = args.container
    if args.codec:
        chosen["codec"] = args.codec
    if args.quality is not None:
        chosen["quality"] = int(args.quality) if args.quality.isdigit() else args.quality
    if args.no_audio:
        chosen["audio"] = "none"
    return chosen or None


def _price(quote: m.VideoOptionQuote | m.OptionQuote) -> str:
    text = f"{quote.charged_xeconds} xeconds ({quote.band})"
    if isinstance(quote, m.VideoOptionQuote) and quote.payment_kind is not None:
        text += f", paid from {quote.payment_kind.value} credit"
        text += ", watermarked" if quote.watermarked else ", clean"
    return text


def cmd_estimate(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    options: Sequence[m.OptionQuote | m.VideoOptionQuote]
    value: object
    if args.input:
        presigned = client.upload(args.input)
        video_estimate = client.estimate_video(presigned.key, args.fps)
        options, value = video_estimate.options, video_estimate
        info = video_estimate.video
        title = (
            f"{Path(args.input).name}: {info.width}x{info.height}, {info.fps:g} fps, "
            f"{info.duration_sec:.2f} s (project {video_estimate.project_id})"
        )
    elif args.duration is not None and args.source_fps is not None:
        estimate = client.estimate(args.duration, args.source_fps, args.fps)
        options, value = estimate.options, estimate
        title = f"{estimate.duration_sec:g} s at {estimate.source_fps:g} fps"
    else:
        err.print("estimate needs a file, or --duration and --source-fps")
        return 2
    if args.json:
        _print_json(out, value)
        return 0
    table = Table(title=title)
    for column in ("fps", "band", "xeconds", "paid from", "output", "note"):
        table.add_column(column)
    for q in options:
        pool = getattr(q, "payment_kind", None)
        marked = getattr(q, "watermarked", None)
        table.add_row(
            str(q.target_fps),
            q.band or "-",
            "-" if q.charged_xeconds is None else str(q.charged_xeconds),
            pool.value if pool is not None else "-",
            "-" if marked is None else ("watermarked" if marked else "clean"),
            q.reason or "",
        )
    out.print(table)
    return 0


def cmd_jobs(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.job_id:
        job = client.cancel_job(args.job_id) if args.cancel else client.get_job(args.job_id)
        if args.json:
            _print_json(out, job)
            return 0
        for name in ("job_id", "project_id", "live_status", "target_fps", "progress"):
            out.print(f"{name}: {_plain_value(getattr(job, name))}")
        out.print(f"frames: {job.frames_done}/{job.frames_total}, eta {_duration(job.eta_sec)}")
        out.print(
            f"charged: {job.charged_xeconds} xeconds ({job.payment_kind.value}), "
            f"refunded: {job.refunded_xeconds}"
        )
        if job.cancel_refund_xeconds is not None:
            out.print(f"cancelling now refunds: {job.cancel_refund_xeconds} xeconds")
        if job.error:
            out.print(f"error: {job.error}")
        if job.output_url:
            out.print(f"output_url: {job.output_url}", soft_wrap=True)
        return 0
    if args.cancel:
        err.print("--cancel needs a JOB_ID")
        return 2
    page = client.list_jobs(limit=args.limit, offset=args.offset)
    if args.json:
        _print_json(out, page)
        return 0
    if not page.items:
        out.print("no jobs" if page.total == 0 else f"no jobs past {page.offset} of {page.total}")
        return 0
    table = Table(title=f"jobs {page.offset + 1}-{page.offset + len(page.items)} of {page.total}")
    for column in ("job_id", "status", "fps", "progress", "xeconds", "created"):
        table.add_column(column, no_wrap=column == "job_id")
    for job in page.items:
        table.add_row(
            job.job_id,
            job.live_status.value,
            str(job.target_fps),
            f"{job.progress:.0%}",
            str(job.charged_xeconds - job.refunded_xeconds),
            job.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)
    return 0


def _plain_value(value: object) -> str:
    return str(_plain(value)) if isinstance(value, datetime | enum.Enum) else str(value)


def cmd_download(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    job = client.get_job(args.job_id)
    if job.output_url is None:
        err.print(f"job {job.job_id} is {job.live_status.value}; only a done job has an output")
        return 1
    dest = Path(args.output or f"{job.job_id}.{job.output.container}")
    with _progress(err) as bars:
        task = bars.add_task("download", total=None, kind="bytes")
        saved = client.download(
            job.output_url,
            dest,
            on_download=lambda got, total: bars.update(task, completed=got, total=total),
        )
    out.print(f"saved {saved}")
    return 0


def cmd_share(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    project_id = args.project_id or client.get_job(args.job).project_id
    if args.revoke:
        client.revoke_share(project_id)
        out.print(f"share link of project {project_id} revoked")
        return 0
    share = client.share(project_id)
    if args.json:
        _print_json(out, share)
    else:
        out.print(f"page: {share.page_url}", soft_wrap=True)
        out.print(f"json: {share.url}", soft_wrap=True)
    return 0


def cmd_delete(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    client.delete_project(args.project_id)
    out.print(f"project {args.project_id} deleted, with its files and share links")
    return 0


def cmd_close_account(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    client.close_account(args.confirm)
    out.print("account closed: its projects are deleted and this API key no longer works")
    return 0


def cmd_me(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    me = client.me()
    if args.json:
        _print_json(out, me)
        return 0
    b = me.balance
    out.print(f"{me.account.email} (account {me.account.id})")
    out.print(
        f"balance: {b.total_xeconds} xeconds ({b.paid_xeconds} paid, {b.free_xeconds} free, "
        "free renders are watermarked)"
    )
    if me.api_key is not None:
        used = me.api_key.last_used_at
        out.print(
            f"api key: {me.api_key.prefix}... created {me.api_key.created_at:%Y-%m-%d}, "
            f"last used {used:%Y-%m-%d %H:%M}"
            if used
            else "never used"
        )
    return 0


def cmd_ledger(client: Reframe, args: argparse.Namespace, out: Console, err: Console) -> int:
    page = client.ledger(limit=args.limit, offset=args.offset)
    if args.json:
        _print_json(out, page)
        return 0
    b = page.balance
    out.print(f"balance: {b.total_xeconds} xeconds ({b.paid_xeconds} paid, {b.free_xeconds} free)")
    if not page.items:
        out.print("no entries" if page.total == 0 else f"no entries past {page.offset}")
        return 0
    first, last = page.offset + 1, page.offset + len(page.items)
    table = Table(title=f"ledger {first}-{last} of {page.total}, newest first")
    for column in ("when", "kind", "xeconds", "pool", "job_id", "description"):
        table.add_column(column, justify="right" if column == "xeconds" else "left")
    for entry in page.items:
        table.add_row(
            entry.created_at.strftime("%Y-%m-%d %H:%M"),
            entry.kind.value,
            f"{entry.amount_xeconds:+d}",
            entry.pool.value,
            entry.job_id or "-",
            entry.description,
        )
    out.print(table)
    return 0


# --- arguments --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-key",
        default=os.environ.get("REFRAME_API_KEY"),
        help="API key (default: $REFRAME_API_KEY)",
    )
    common.add_argument(
        "--api-url",
        default=os.environ.get("REFRAME_API_URL", DEFAULT_BASE_URL),
        help=f"service URL (default: $REFRAME_API_URL or {DEFAULT_BASE_URL})",
    )
    common.add_argument("--json", action="store_true", help="print results as JSON")

    parser = argparse.ArgumentParser(
        prog="reframe-client", description="Render smoother video with the Reframe API."
    )
    parser.add_argument("--version", action="version", version=f"reframe-client {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("render", cmd_render, "upload a clip, render it at --fps and download the result")
    p.add_argument("input", help="the video file to render")
    p.add_argument("--fps", type=int, required=True, help="output frame rate (24-240)")
    p.add_argument("-o", "--output", help="where to save it (default: <name>-<fps>fps.<container>)")
    p.add_argument(
        "--container", choices=["mp4", "mov", "mkv"], help="output container (default: mp4)"
    )
    p.add_argument(
        "--codec", choices=["h264", "hevc", "prores"], help="video codec (prores: mov only)"
    )
    p.add_argument(
        "--quality",
        help="a CRF number (1-51, lower is better) or standard, high, visually_lossless",
    )
    p.add_argument("--no-audio", action="store_true", help="leave the source's sound out")
    p.add_argument(
        "--playback-fps",
        type=int,
        help="slow motion: play the frames rendered at --fps at this rate (24-60; no sound)",
    )
    p.add_argument("--webhook-url", help="receive signed status-change POSTs here")
    p.add_argument(
        "--preview",
        nargs="?",
        type=float,
        const=True,
        default=False,
        metavar="SECONDS",
        help=(
            "render only the first seconds (default 3, at most 5), watermarked; the first "
            "previews of each UTC day are free (see `pricing`)"
        ),
    )
    p.add_argument("--poll-interval", type=float, default=3.0, help="seconds between polls")
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")

    p = command("estimate", cmd_estimate, "price a clip at one or more frame rates")
    p.add_argument("input", nargs="?", help="a video file (uploaded and probed)")
    p.add_argument("--fps", type=int, nargs="+", default=[60, 120, 240], help="frame rates")
    p.add_argument("--duration", type=float, help="seconds, to price without uploading")
    p.add_argument("--source-fps", type=float, help="the clip's frame rate, with --duration")

    p = command("jobs", cmd_jobs, "list recent jobs, or show (or --cancel) one")
    p.add_argument("job_id", nargs="?", help="show this job")
    p.add_argument("--cancel", action="store_true", help="cancel the job (refunds what is due)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)

    p = command("download", cmd_download, "download a done job's output")
    p.add_argument("job_id")
    p.add_argument("-o", "--output", help="where to save it (default: <job_id>.<container>)")

    p = command("share", cmd_share, "create (or --revoke) a project's public review link")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("project_id", nargs="?", help="the project to share")
    target.add_argument("--job", help="share the project of this job")
    p.add_argument("--revoke", action="store_true", help="revoke the live link instead")

    p = command("delete", cmd_delete, "delete a project, its files, share links and renders")
    p.add_argument("project_id")

    p = command("close-account", cmd_close_account, "close the account and delete all its data")
    p.add_argument("--confirm", required=True, metavar="EMAIL", help="the account's email")

    command("me", cmd_me, "show the account, its balance and its key")

    p = command("ledger", cmd_ledger, "show where the credits went, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # No markup or highlighting: file names and server messages are printed as they are.
    out = Console(markup=False, highlight=False)
    err = Console(stderr=True, markup=False, highlight=False)
    handler: Handler = args.handler
    try:
        with Reframe(args.api_key, args.api_url) as client:
            return handler(client, args, out, err)
    except RenderFailed as exc:
        err.print(f"render failed: {exc.error} ({exc.refunded_xeconds} xeconds refunded)")
        return 1
    except ReframeError as exc:
        err.print(f"error: {exc}")
        return 1
    except FileNotFoundError as exc:
        err.print(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
