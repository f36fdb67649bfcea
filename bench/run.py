"""Scale benchmark, run by hand (not part of the tests):

    .venv/bin/python bench/run.py                     # SQLite, plus PostgreSQL when reachable

For each engine it builds a database with a year of history over about 500 series, then, for
each size, a scored day of that many events with realistic distinct user agents (an index on
``created_at``), trains once, and measures side by side, each in its own process:

1. ``bare query``: ``sql/daily_volume.sql`` for the scored day alone, through the driver;
2. ``deploy``: ``deploy.py --dry-run`` for that day, the whole process (the first night, with an
   empty user-agent cache, and the next, with it filled);
3. ``naive``: raw events into pandas, ``user_agents.parse`` per row, ``groupby`` (small sizes);
4. ``train``: ``train.py`` on the 365-day history, MLflow logging included;
5. ``parse``: every distinct user agent of the largest day through the native path (rate per
   second), then through ``user_agents.parse`` itself, counting the families that differ.

It prints wall seconds, peak RSS and the ratios deploy / bare query and naive / deploy, and
writes the same table to ``bench/results/latest.csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
QUERY = ROOT / "sql" / "daily_volume.sql"
SCORED_DAY = dt.date(2026, 6, 30)
HISTORY_DAYS = 365
HISTORY_EVENTS_PER_DAY = 20_000
CHANNELS = {  # 530 series with the actions below
    "web": 0.35, "mobile": 0.25, "api": 0.1, "partner": 0.1, "kiosk": 0.05, "tv": 0.05,
    "desktop": 0.05, "watch": 0.05,
}  # fmt: skip
ACTIONS = [
    "view", "search", "login", "purchase", "logout", "share", "comment", "upload", "rate", "save",
]  # fmt: skip
AGENTS_PER_FAMILY = 5_000
MORE_TEMPLATES = {  # in-app browsers and apps: where real days get their many distinct agents
    "iOS": [
        "Mozilla/5.0 (iPhone; CPU iPhone OS {e}_{d} like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) CriOS/{a}.0.{b}.{c} Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {e}_{d} like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/{a}.0.0.{c}.{b};FBBV/{b}{c};FBDV/iPhone{f},"
        "{d};FBMD/iPhone;FBSN/iOS;FBSV/{e}.{d};FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    ],
    "Mac OS X": [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{d}) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/{a}.0.0.0 Safari/537.36 Edg/{a}.0.{b}.{c}",
    ],
    "Android": [
        "Mozilla/5.0 (Linux; Android {f}; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Mobile Safari/537.36 Instagram {a}.0.0.{c}.{b} Android",
    ],
    "Ubuntu": [
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Safari/537.36",
    ],
    "Other": ["okhttp/4.{d}.{c}", "ShopApp/{a}.{b}.{c} (build {b}{c}; unknown device)"],
}
DEFAULT_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--naive-max", type=int, default=1_000_000, help="largest naive size")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="URL, or 'none'")
    parser.add_argument("--history-events", type=int, default=HISTORY_EVENTS_PER_DAY,
                        help="events per history day (default: %(default)s)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.csv")
    parser.add_argument("--measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measured_step(*args.measure)
    rows = []
    for number, (engine, url) in enumerate(engines(args.postgres)):
        rows += bench_engine(engine, url, args.sizes, args.naive_max, args.history_events)
        if number == 0:  # the parsers do not depend on the database
            rows.append(parse_row(engine, url, max(args.sizes)))
    write_table(rows, args.out)
    return 0


def engines(postgres: str) -> list[tuple[str, str]]:
    found = [("sqlite", f"sqlite:///{WORK / 'bench.db'}")]
    if postgres != "none":
        from sqlalchemy import create_engine, text

        try:
            with create_engine(postgres).connect() as connection:
                connection.execute(text("SELECT 1"))
            found.append(("postgresql", postgres))
        except Exception as exc:  # unreachable: measured on SQLite only
            print(f"bench: PostgreSQL not reachable ({type(exc).__name__}); SQLite only")
    return found


# --- building ------------------------------------------------------------------------------


def wide_spec(last_day: dt.date, days: int, events_per_day: int, agents_per_family: int):
    from volume_monitor.demo import DemoSpec

    return DemoSpec(
        last_day, days=days, events_per_day=events_per_day, seed=5, faults=[],
        agents_per_family=agents_per_family, channels=CHANNELS,
        actions={a: 1 / len(ACTIONS) for a in ACTIONS},
    )  # fmt: skip


def build_history(url: str, events_per_day: int) -> None:
    """The 365 days before the scored day (the scored day itself is added per size)."""
    from sqlalchemy import create_engine

    from volume_monitor.demo import write_demo

    began = time.perf_counter()
    spec = wide_spec(SCORED_DAY - dt.timedelta(days=1), HISTORY_DAYS, events_per_day, 60)
    events = write_demo(create_engine(url), spec, replace=True)
    print(f"bench: history of {events:,} events, {len(spec.series)} series, "
          f"in {time.perf_counter() - began:.0f}s")  # fmt: skip


def set_scored_day(url: str, size: int) -> int:
    """Replace the scored day's events with ``size`` new ones; returns the distinct agents."""
    import numpy as np
    from sqlalchemy import create_engine, text

    from volume_monitor.demo import TEMPLATES, agent_pool, events_of_day, insert_events

    engine = create_engine(url)
    spec = wide_spec(SCORED_DAY, 1, size, AGENTS_PER_FAMILY)
    rng = np.random.default_rng(size)
    templates = {f: TEMPLATES[f] + MORE_TEMPLATES.get(f, []) for f in TEMPLATES}
    pool = agent_pool(rng, AGENTS_PER_FAMILY, templates)
    midnight = dt.datetime.combine(SCORED_DAY, dt.time())
    day = {"start": midnight, "end": midnight + dt.timedelta(days=1)}
    distinct: set = set()
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM activityhistory WHERE created_at >= :start AND created_at < :end"),
            day,
        )
        for start in range(0, size, 500_000):
            columns = events_of_day(rng, spec, pool, SCORED_DAY, min(500_000, size - start))
            distinct.update(columns["user_agent"])
            insert_events(connection, columns)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE" if engine.name == "postgresql" else "ANALYZE"))
    return len(distinct)


# --- measuring -----------------------------------------------------------------------------


def bench_engine(engine, url, sizes: list[int], naive_max: int, history: int) -> list[dict]:
    WORK.mkdir(parents=True, exist_ok=True)
    store = WORK / f"mlruns-{engine}"
    shutil.rmtree(store, ignore_errors=True)
    for stale in WORK.glob(f"state-{engine}.db*"):
        stale.unlink()
    build_history(url, history)
    env = {
        "VM_DATABASE_URL": url, "VM_QUERY": str(QUERY),
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "VM_RESULTS_DIR": str(WORK / f"results-{engine}"),
        "VM_STATE_URL": f"sqlite:///{WORK / f'state-{engine}.db'}",
        "VM_LOG_FILE": str(WORK / f"bench-{engine}.log"),
        "VM_UA_CACHE": str(WORK / f"agents-{engine}.json"),
        "VM_TIMEZONE": "UTC",
    }  # fmt: skip
    start = SCORED_DAY - dt.timedelta(days=HISTORY_DAYS)
    train = run(["train.py", "--start", str(start), "--end", str(SCORED_DAY), "--promote"], env)
    rows = [row(engine, "-", "train 365 days x ~500 series", train)]
    for size in sizes:
        measured = len(rows)
        distinct = set_scored_day(url, size)
        label = f"{size:,}"
        bare = run(["bench/run.py", "--measure", "bare", url, str(SCORED_DAY)], env)
        Path(env["VM_UA_CACHE"]).unlink(missing_ok=True)
        deploy_args = ["deploy.py", "--dry-run", "--date", str(SCORED_DAY)]
        first = run(deploy_args, env)
        deploy = run(deploy_args, env)
        rows += [
            row(engine, label, "bare query", bare, distinct=distinct),
            row(engine, label, "deploy, first night (empty UA cache)", first, bare=bare),
            row(engine, label, "deploy", deploy, bare=bare),
        ]
        if size <= naive_max:
            naive = run(["bench/run.py", "--measure", "naive", url, str(SCORED_DAY)], env)
            rows.append(row(engine, label, "naive (pandas, parse per row)", naive, deploy=deploy))
        print_rows(rows[measured:])
    return rows


def parse_row(engine: str, url: str, size: int) -> dict:
    """Both parsers over the distinct agents of the largest day (still in the database)."""
    measured = run(["bench/run.py", "--measure", "parse", url, str(SCORED_DAY)], {})
    agents, seconds, mismatches = measured["out"].split()
    step = (
        f"user-agent parsing: {int(agents) / float(seconds):,.0f} distinct/s, "
        f"{mismatches} differ from user_agents"
    )
    parsed = {**measured, "wall": float(seconds)}
    return row(engine, f"{size:,}", step, parsed, distinct=int(agents))


def run(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command`` (a script of the project and its arguments) in a fresh process; its
    wall seconds and peak RSS."""
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "code = subprocess.run(sys.argv[1:]).returncode; wall = time.perf_counter() - t; "
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
        "print(f'{code} {wall:.3f} {rss}', file=sys.stderr)"
    )
    script, *rest = command
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, str(ROOT / script), *rest],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
    )  # fmt: skip
    code, wall, rss = result.stderr.strip().splitlines()[-1].split()
    if code != "0":
        sys.exit(f"bench: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return {"wall": float(wall), "rss_mb": int(rss) / 1024, "out": result.stdout}


def row(engine, size, step, measured, bare=None, deploy=None, distinct=None) -> dict:
    return {
        "engine": engine, "events": size, "step": step,
        "wall_s": round(measured["wall"], 2), "peak_rss_mb": round(measured["rss_mb"]),
        "distinct_agents": distinct or "",
        "deploy_over_bare": round(measured["wall"] / bare["wall"], 2) if bare else "",
        "naive_over_deploy": round(measured["wall"] / deploy["wall"], 1) if deploy else "",
    }  # fmt: skip


def measured_step(kind: str, url: str, day: str) -> int:
    """Run inside a measured process: the bare query, the parsers, or the naive way."""
    from sqlalchemy import create_engine, text

    first = dt.date.fromisoformat(day)
    binds = {"start": first, "end": first + dt.timedelta(days=1)}
    engine = create_engine(url)
    if kind == "bare":
        from volume_monitor.db import read_query

        with engine.connect() as connection:
            rows = connection.execute(read_query(QUERY), binds).fetchall()
        print(f"{len(rows)} aggregated rows")
        return 0
    if kind == "parse":
        return compare_parsers(engine, binds)
    import pandas as pd
    import user_agents

    naive = text(
        "SELECT created_at, channelid, actioncode, user_agent FROM activityhistory "
        "WHERE created_at >= :start AND created_at < :end"
    )
    with engine.connect() as connection:
        events = pd.read_sql(naive, connection, params=binds)
    agents = [ua if isinstance(ua, str) else "" for ua in events["user_agent"]]
    events["os_family"] = [user_agents.parse(ua).os.family for ua in agents]
    events["date"] = pd.to_datetime(events["created_at"]).dt.normalize()
    counts = events.groupby(["date", "channelid", "actioncode", "os_family"]).size()
    print(f"{len(events)} events -> {len(counts)} series")
    return 0


def compare_parsers(engine, binds: dict) -> int:
    """Print the distinct agents of the day, the native path's seconds over all of them (rules
    loaded beforehand, no cache) and how many families differ from ``user_agents.parse``."""
    from sqlalchemy import text

    from volume_monitor.agents import os_family, slow_os_family

    distinct = text(
        "SELECT DISTINCT user_agent FROM activityhistory "
        "WHERE created_at >= :start AND created_at < :end"
    )
    with engine.connect() as connection:
        agents = [ua or "" for (ua,) in connection.execute(distinct, binds)]
    os_family.__wrapped__("Mozilla/5.0 (Windows NT 10.0)")  # loads the rules
    began = time.perf_counter()
    fast = [os_family.__wrapped__(agent) for agent in agents]
    seconds = time.perf_counter() - began
    differ = sum(f != slow_os_family(a) for f, a in zip(fast, agents, strict=True))
    print(len(agents), f"{seconds:.4f}", differ)
    return 0


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        print(
            f"{r['engine']:<11}{r['events']:>10}  {r['step']:<38}{r['wall_s']:>8.2f} s"
            f"{r['peak_rss_mb']:>7} MB  {r['deploy_over_bare'] or '':>6}"
            f"  {r['naive_over_deploy'] or '':>6}"
        )


def write_table(rows: list[dict], path: Path) -> None:
    print(f"\n{'engine':<11}{'events':>10}  {'step':<38}{'wall':>10}{'peak RSS':>10}"
          f"  {'dep/bare':>8}  {'naive/dep':>9}")  # fmt: skip
    print_rows(rows)
    save_csv(rows, path)


def save_csv(rows: list[dict], path: Path) -> None:
    """``rows`` as a CSV file at ``path`` (its folder created), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nbench: table written to {path}")


if __name__ == "__main__":
    sys.exit(main())
