"""`reframe` command line: one module per command group, each exposing `register(subparsers)`.

Command modules import their heavy dependencies (torch, ray, sqlalchemy) inside the handlers so
that `reframe --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reframe.errors import ReframeError

# Command groups, in the order `reframe --help` lists them.
_COMMAND_MODULES = (
    "reframe.cli.serve",
    "reframe.cli.render",
    "reframe.cli.models",
    "reframe.cli.accounts",
    "reframe.cli.jobs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reframe", description="Reframe: smoother video with RIFE frame interpolation."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ReframeError as exc:
        print(f"reframe: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reframe: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
