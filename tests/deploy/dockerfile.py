"""A small reader for deploy/Dockerfile: instructions with their line, and pinned versions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # continuation lines joined, comments inside dropped
    line: int  # 1-based line of the keyword


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments may sit between continuation lines, as Docker allows
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].rstrip() if continued else stripped)
        if not continued:
            joined = " ".join(part for part in pending if part)
            keyword, _, args = joined.partition(" ")
            out.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    return out


def lock_pin(name: str) -> str:
    """The version requirements.lock pins for `name`."""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.lower().startswith(f"{name.lower()}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} is not pinned in requirements.lock")


def stages(items: list[Instruction]) -> dict[str, list[Instruction]]:
    """Instructions of each named build stage, its FROM first."""
    out: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for item in items:
        if item.keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", item.args, flags=re.IGNORECASE)
            assert match, f"line {item.line}: every stage is named (FROM image AS name)"
            current = out.setdefault(match.group(2), [])
        current.append(item)
    return out


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def excluded_from_context(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative, '/'-separated) out of the build context.

    Docker's rules, as far as this file uses them: a pattern matches the path or any folder
    above it, `**/` matches any depth, a later `!pattern` re-includes.
    """
    from fnmatch import fnmatchcase

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        forms = [body, body.removeprefix("**/")] if body.startswith("**/") else [body]
        hit = any(
            fnmatchcase(candidate, form)
            or (form != body and fnmatchcase(candidate.rsplit("/", 1)[-1], form))
            for candidate in candidates
            for form in forms
        )
        if hit:
            result = not negate
    return result
