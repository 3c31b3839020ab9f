"""Deep schema fuzzing: the test suite's schemathesis run with more examples and more seeds.

    .venv/bin/python bench/fuzz.py                          # 200 examples, 3 seeds, SQLite
    .venv/bin/python bench/fuzz.py --examples 1000 --seeds 1 2 3 4 5
    .venv/bin/python bench/fuzz.py --database-url postgresql+psycopg://postgres@127.0.0.1/test

The app is the one `create_app` builds, over a fresh migrated database (a temporary SQLite
file, or a fresh schema on the PostgreSQL URL given) and local storage in a temporary folder,
called in-process over ASGI; see tests/fixtures/fuzz.py for what is fuzzed and what counts as
a finding. Each seed gets a fresh world. Prints the findings and writes bench/out/fuzz.json;
exits 1 when anything was found.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def _database(stack: ExitStack, tmp: Path, base_url: str | None) -> Any:
    from sqlalchemy import create_engine, text

    from reframe.db import make_engine, make_sessionmaker, migrate
    from tests.fixtures.db import TestDatabase, postgres_schema_url

    if base_url is None:
        url = f"sqlite:///{tmp / 'reframe.db'}"
    else:
        schema = f"fuzz_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()

        stack.callback(drop)
        url = postgres_schema_url(base_url, schema)
    migrate(url)
    engine = make_engine(url)
    stack.callback(engine.dispose)
    return TestDatabase(
        "sqlite" if base_url is None else "postgres", url, engine, make_sessionmaker(engine)
    )


def run_seed(seed: int, examples: int, database_url: str | None) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from tests.fixtures.app import ApiHarness, make_app, make_settings
    from tests.fixtures.fuzz import build_world, fuzz_app

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reframe-fuzz-")))
        db = _database(stack, tmp, database_url)
        settings = make_settings(tmp, db, rate_limit_read_per_sec=0, rate_limit_write_per_sec=0)
        app = make_app(settings, db)
        client = stack.enter_context(TestClient(app, base_url="http://testserver"))
        api = ApiHarness(app=app, client=client, settings=settings, db=db, tmp_path=tmp)
        started = time.monotonic()
        operations, findings = fuzz_app(build_world(api), max_examples=examples, seed=seed)
        return {
            "seed": seed,
            "examples_per_run": examples,
            "operations": operations,
            "seconds": round(time.monotonic() - started, 1),
            "findings": findings,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--examples", type=int, default=200, help="examples per operation run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: temporary SQLite)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    results = []
    for seed in args.seeds:
        result = run_seed(seed, args.examples, args.database_url)
        results.append(result)
        print(
            f"seed {seed}: {result['operations']} operations x 4 runs x {args.examples} examples "
            f"in {result['seconds']} s, {len(result['findings'])} findings",
            flush=True,
        )
        for finding in result["findings"]:
            print("\n" + finding)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fuzz.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
