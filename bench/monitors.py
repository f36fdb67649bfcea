"""Many-monitors benchmark, run by hand (not part of the tests):

    .venv/bin/python bench/monitors.py            # about 12 minutes on 2 cores
    .venv/bin/python bench/monitors.py --quick    # everything shrunk: checks the script

It builds its data under ``bench/work/monitors/full/`` (or ``quick/``; rebuilt only when its
shape changes) and times the product's own scripts, each in a fresh process, from outside:
wall seconds and the child's peak RSS as ``os.wait4`` reports it. Every product process must
exit with 0.

1. **50 monitors of 100 series** (``segment`` x ``region``), each its own SQLite file with a
   raw ``events(created_at, segment, region)`` table, one row per event: 120 days, Poisson
   around a per-series level of 3 to 20 events a day with a weekly pattern, a fault injected
   into the last day of a few monitors. The query counts in the database (``COUNT(*) ...
   GROUP BY``). ``train.py --promote`` trains every monitor on the first 119 days (one
   process, measured, no target); then, each on a fresh copy of the trained state store:

   (a) one ``deploy.py --date LAST --dry-run`` scoring every monitor, ``VM_WORKERS=2``
       (and 1 and 4 for comparison);
   (b) one ``deploy.py --date LAST --dry-run --monitor mNN`` per monitor, one after another:
       summed wall, largest peak RSS.

   Targets: (a) wall <= 0.3 x (b) summed wall; (a) peak RSS <= 600 MB.

2. **One monitor of 20,000 series** (``segment`` x ``region`` x ``product``), 366 days of
   ~1 to 5 events per series and day. Its 20 million raw events would take too long to insert,
   so its table holds ``events(created_at, segment, region, product, n)``, one row per series
   and day with an event (6.5 million rows), and its query returns ``SUM(n) AS count`` (the
   GROUP BY still runs in the database). Measured: ``train.py --promote`` on the first 365
   days (target <= 300 s and <= 2 GB peak RSS; it seeds the state store with 7.3 million
   rows), the bare query of the last day (sqlite3, every row fetched, nothing else) and
   ``deploy.py --dry-run`` of the last day (target: deploy - bare <= 30 s, peak RSS <= 2 GB).

``--quick`` shrinks both (5 monitors; 2,000 series). The table is printed and written to
``bench/results/monitors-latest.csv``; ``bench/results/monitors-baseline.csv`` is a full run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from run import save_csv  # bench/run.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "monitors"
RESULTS = ROOT / "bench" / "results"
LAST_DAY = dt.date(2026, 6, 30)  # the scored day (long over in any time zone)
WEEKLY = np.array([1.0, 1.05, 1.1, 1.05, 0.95, 0.7, 0.6])  # Monday first
MB = 1024  # ru_maxrss is in KiB on Linux

MANY_QUERY = """\
-- Events per day, segment and region: raw rows, counted in the database.
SELECT DATE(created_at) AS date, segment, region, COUNT(*) AS count
FROM events
WHERE created_at >= :start AND created_at < :end
GROUP BY DATE(created_at), segment, region
"""
BIG_QUERY = """\
-- Events per day, segment, region and product: rows carry n events, summed in the database.
SELECT DATE(created_at) AS date, segment, region, product, SUM(n) AS count
FROM events
WHERE created_at >= :start AND created_at < :end
GROUP BY DATE(created_at), segment, region, product
"""


@dataclass(frozen=True)
class Shape:
    """The data of one run; a change rebuilds the databases."""

    monitors: int = 50
    segments: int = 10  # x regions = series per monitor
    regions: int = 10
    days: int = 120
    big_dims: tuple[int, int, int] = (20, 25, 40)  # segment x region x product
    big_days: int = 366
    name: str = "full"  # its folder under bench/work/monitors/


QUICK = Shape(monitors=5, big_dims=(10, 10, 20), name="quick")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 monitors, 2,000 series")
    parser.add_argument("--only", choices=("many", "big"), help="run one part only")
    parser.add_argument("--out", type=Path, default=RESULTS / "monitors-latest.csv")
    parser.add_argument("--measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return bare_query(*args.measure)
    began = time.perf_counter()
    shape = QUICK if args.quick else Shape()
    rows: list[dict] = []
    if args.only in (None, "many"):
        rows += bench_many(shape)
    if args.only in (None, "big"):
        rows += bench_big(shape)
    write_table(rows, args.out)
    print(f"bench: whole run {time.perf_counter() - began:.0f}s")
    return 0


# --- building ------------------------------------------------------------------------------


def labels(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n:02d}" for n in range(count)]


def day_strings(first: dt.date, days: int) -> list[str]:
    return [(first + dt.timedelta(days=n)).isoformat() + " " for n in range(days)]


TIMES = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]


def daily_counts(rng, levels: np.ndarray, first: dt.date, days: int) -> np.ndarray:
    """Poisson counts, days x series, around ``levels`` with the weekly pattern and a little
    day-to-day noise."""
    weekdays = np.array([(first + dt.timedelta(days=n)).weekday() for n in range(days)])
    noise = rng.normal(1.0, 0.04, size=(days, 1))
    return rng.poisson(levels[None, :] * WEEKLY[weekdays][:, None] * noise)


def inject(counts_of_day: np.ndarray, kind: str, segment_of: np.ndarray, region_of: np.ndarray):
    """A fault on one day's counts (in place): a duplicated segment, a stalled region, a
    missing segment or a spike."""
    if kind == "duplicate":
        hit = segment_of == 2
        counts_of_day[hit] = np.round(counts_of_day[hit] * 2.5)
    elif kind == "stall":
        hit = region_of == 4
        counts_of_day[hit] = np.round(counts_of_day[hit] * 0.05)
    elif kind == "missing":
        counts_of_day[segment_of == 7] = 0
    elif kind == "spike":
        hit = (segment_of == 1) & (region_of < 3)
        counts_of_day[hit] = counts_of_day[hit] * 4


def new_database(path: Path, columns: str) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute(f"CREATE TABLE events ({columns})")
    return connection


def finish_database(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE INDEX events_created_at ON events (created_at)")
    connection.commit()
    connection.execute("ANALYZE")
    connection.close()


def build_many_monitor(path: Path, seed: int, shape: Shape, fault: str | None) -> int:
    """One monitor's raw events: one row per event, in time order."""
    rng = np.random.default_rng(seed)
    series = shape.segments * shape.regions
    segment_of, region_of = np.divmod(np.arange(series), shape.regions)
    first = LAST_DAY - dt.timedelta(days=shape.days - 1)
    counts = daily_counts(rng, rng.uniform(3, 20, series), first, shape.days)
    if fault:
        inject(counts[-1], fault, segment_of, region_of)
    flat = counts.ravel()
    cell = np.repeat(np.arange(flat.size), flat)  # one entry per event: day * series + s
    day, series_index = np.divmod(cell, series)
    second = rng.integers(0, 86_400, cell.size)
    order = np.lexsort((second, day))
    day, series_index, second = day[order], series_index[order], second[order]
    days, segments = day_strings(first, shape.days), labels("s", shape.segments)
    regions = labels("r", shape.regions)
    created = [days[d] + TIMES[s] for d, s in zip(day.tolist(), second.tolist(), strict=True)]
    rows = zip(
        created,
        [segments[i] for i in segment_of[series_index].tolist()],
        [regions[i] for i in region_of[series_index].tolist()],
        strict=True,
    )
    connection = new_database(path, "created_at TEXT NOT NULL, segment TEXT, region TEXT")
    connection.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
    finish_database(connection)
    return int(flat.sum())


def build_big(path: Path, shape: Shape) -> tuple[int, int]:
    """The 20,000-series table: one row per series and day holding ``n`` events (none where a
    series had no event that day); returns (rows, events)."""
    rng = np.random.default_rng(2026)
    n_seg, n_reg, n_prod = shape.big_dims
    series = n_seg * n_reg * n_prod
    index = np.arange(series)
    segment_of, rest = np.divmod(index, n_reg * n_prod)
    region_of, product_of = np.divmod(rest, n_prod)
    first = LAST_DAY - dt.timedelta(days=shape.big_days - 1)
    counts = daily_counts(rng, rng.uniform(1, 5, series), first, shape.big_days)
    inject(counts[-1], "duplicate", segment_of, region_of)
    inject(counts[-1], "stall", segment_of, region_of)
    segments, regions = labels("seg", n_seg), labels("reg", n_reg)
    products = labels("prod", n_prod)
    keys = [
        (segments[s], regions[r], products[p])
        for s, r, p in zip(segment_of, region_of, product_of, strict=True)
    ]
    days = day_strings(first, shape.big_days)
    connection = new_database(
        path, "created_at TEXT NOT NULL, segment TEXT, region TEXT, product TEXT, n INTEGER"
    )
    rows = 0
    for day in range(shape.big_days):
        present = np.flatnonzero(counts[day])
        seconds = np.sort(rng.integers(0, 86_400, present.size))
        connection.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
            (
                (days[day] + TIMES[t], *keys[s], n)
                for s, t, n in zip(
                    present.tolist(), seconds.tolist(), counts[day, present].tolist(), strict=True
                )
            ),
        )
        rows += present.size
    finish_database(connection)
    return rows, int(counts.sum())


def up_to_date(folder: Path, stamp: dict) -> bool:
    """Whether ``folder`` already holds data built for ``stamp``; otherwise it is emptied."""
    file = folder / "stamp.json"
    if file.is_file() and json.loads(file.read_text()) == stamp:
        return True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return False


def fault_plan(names: list[str]) -> dict[str, str]:
    """A few monitors get a fault on the scored day, spread over the list."""
    kinds = ["duplicate", "stall", "missing", "spike"]
    step = max(1, len(names) // len(kinds))
    return dict(zip(names[2::step], kinds, strict=False))


def build_many(shape: Shape) -> tuple[Path, dict[str, str]]:
    """The monitors' databases, their query and ``monitors.yml``; returns the file and the
    faults injected (monitor -> kind)."""
    data = WORK / shape.name / "many" / "data"
    names = [f"m{n:02d}" for n in range(1, shape.monitors + 1)]
    faults = fault_plan(names)
    stamp = {**asdict(shape), "query": MANY_QUERY, "last": str(LAST_DAY), "version": 1}
    stamp["big_dims"] = list(shape.big_dims)
    if not up_to_date(data, stamp):
        began, events = time.perf_counter(), 0
        for number, name in enumerate(names):
            events += build_many_monitor(data / f"{name}.db", number, shape, faults.get(name))
        print(
            f"bench: {len(names)} monitor databases, {events:,} raw events, "
            f"in {time.perf_counter() - began:.0f}s"
        )
        (data / "events_daily.sql").write_text(MANY_QUERY)
        lines = ["monitors:"]
        for name in names:
            lines += [
                f"  {name}:",
                f"    database_url: sqlite:///{data / f'{name}.db'}",
                f"    query: {data / 'events_daily.sql'}",
                "    dimensions: [segment, region]",
            ]
        (data / "monitors.yml").write_text("\n".join(lines) + "\n")
        (data / "stamp.json").write_text(json.dumps(stamp))
    return data / "monitors.yml", faults


def build_big_monitor(shape: Shape) -> tuple[Path, Path]:
    """The 20,000-series database, query and monitors file; returns (file, database)."""
    data = WORK / shape.name / "big" / "data"
    stamp = {"dims": list(shape.big_dims), "days": shape.big_days, "query": BIG_QUERY,
             "last": str(LAST_DAY), "version": 1}  # fmt: skip
    database = data / "big.db"
    if not up_to_date(data, stamp):
        began = time.perf_counter()
        rows, events = build_big(database, shape)
        print(
            f"bench: big monitor, {rows:,} rows holding {events:,} events, "
            f"in {time.perf_counter() - began:.0f}s"
        )
        (data / "events_daily.sql").write_text(BIG_QUERY)
        (data / "monitors.yml").write_text(
            "monitors:\n  big:\n"
            f"    database_url: sqlite:///{database}\n"
            f"    query: {data / 'events_daily.sql'}\n"
            "    dimensions: [segment, region, product]\n"
        )
        (data / "stamp.json").write_text(json.dumps(stamp))
    return data / "monitors.yml", database


# --- measuring -----------------------------------------------------------------------------


def settings_env(folder: Path, monitors_file: Path, mlruns: Path, workers: int = 2) -> dict:
    """The product's settings for a run whose state, results and log live in ``folder``."""
    return {
        "VM_MONITORS": str(monitors_file),
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlruns / 'mlflow.db'}",
        "VM_RESULTS_DIR": str(folder / "results"),
        "VM_STATE_URL": f"sqlite:///{folder / 'state' / 'volume-monitor.db'}",
        "VM_LOG_FILE": str(folder / "volume-monitor.log"),
        "VM_UA_CACHE": "",
        "VM_WORKERS": str(workers),
        "VM_TIMEZONE": "UTC",
        "VM_LOG_LEVEL": "INFO",
        "SMTP_HOST": "",
        "ALERT_TO": "",
    }


def run(label: str, command: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run ``command`` (a script of the project, or this one, and its arguments) in a fresh
    process from ``cwd``; its wall seconds and peak RSS from ``os.wait4``. Exits the benchmark
    with the child's stderr tail unless it exits with 0."""
    script, *rest = command
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, str(ROOT / script), *rest], cwd=cwd, env={**os.environ, **env},
            stdout=out, stderr=err, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if child.returncode != 0:
        sys.exit(
            f"bench: {label} failed with exit code {child.returncode}: "
            f"{' '.join(command)}\n--- stderr (tail) ---\n{stderr[-4000:]}"
        )
    print(f"bench:   {label}: {wall:.1f}s, {usage.ru_maxrss / MB:.0f} MB")
    return {"wall": wall, "rss_mb": usage.ru_maxrss / MB, "out": stdout, "err": stderr}


def fresh_copy(trained: Path, folder: Path) -> None:
    """``folder`` with a copy of the trained state store and nothing else (the MLflow store is
    only read by scoring: it is shared)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "state").mkdir(parents=True)
    for file in (trained / "state").iterdir():
        shutil.copy2(file, folder / "state" / file.name)


def check_results(folder: Path, names: list[str]) -> list[str]:
    """Every monitor's summary of the scored day; returns the monitors that alert."""
    alerting = []
    for name in names:
        summary = folder / "results" / name / LAST_DAY.isoformat() / "summary.json"
        if not summary.is_file():
            sys.exit(f"bench: no results for {name} in {folder}")
        if json.loads(summary.read_text())["alert"]:
            alerting.append(name)
    return alerting


def bench_many(shape: Shape) -> list[dict]:
    monitors_file, faults = build_many(shape)
    names = [f"m{n:02d}" for n in range(1, shape.monitors + 1)]
    base = WORK / shape.name / "many"
    trained = base / "trained"
    shutil.rmtree(trained, ignore_errors=True)
    trained.mkdir()
    mlruns = trained / "mlruns"
    part = f"{shape.monitors} monitors x {shape.segments * shape.regions} series"
    print(f"bench: {part}, faults {faults}")
    start = LAST_DAY - dt.timedelta(days=shape.days - 1)
    train_args = ["train.py", "--start", str(start), "--end", str(LAST_DAY), "--promote"]
    train = run("train all", train_args, settings_env(trained, monitors_file, mlruns), trained)
    rows = [measured(part, f"train {shape.days - 1} days, one process", train)]
    deploy_args = ["deploy.py", "--date", str(LAST_DAY), "--dry-run"]

    together = {}
    for workers in (2, 1, 4):
        folder = base / f"together-w{workers}"
        fresh_copy(trained, folder)
        env = settings_env(folder, monitors_file, mlruns, workers)
        together[workers] = run(f"(a) workers={workers}", deploy_args, env, folder)
        alerting = check_results(folder, names)
        step = f"(a) one deploy, all monitors, VM_WORKERS={workers}"
        rows.append(measured(part, step, together[workers], note=alert_note(alerting, faults)))

    folder = base / "separate"
    fresh_copy(trained, folder)
    env = settings_env(folder, monitors_file, mlruns)
    each = [run(f"(b) {name}", [*deploy_args, "--monitor", name], env, folder) for name in names]
    alerting = check_results(folder, names)
    separate = {"wall": sum(m["wall"] for m in each), "rss_mb": max(m["rss_mb"] for m in each)}
    step = f"(b) {len(names)} deploys, one per monitor, in turn (sum; max RSS)"
    rows.append(measured(part, step, separate, note=alert_note(alerting, faults)))

    ratio = together[2]["wall"] / separate["wall"]
    rows += [
        target(part, "(a) wall / (b) summed wall, VM_WORKERS=2", ratio, "<= 0.30", ratio <= 0.3),
        target(part, "(a) peak RSS MB, VM_WORKERS=2", together[2]["rss_mb"], "<= 600",
               together[2]["rss_mb"] <= 600),
    ]  # fmt: skip
    for workers in (1, 4):
        value = together[workers]["wall"] / separate["wall"]
        rows.append(target(part, f"(a) wall / (b) summed wall, VM_WORKERS={workers}", value))
    return rows


def bench_big(shape: Shape) -> list[dict]:
    monitors_file, database = build_big_monitor(shape)
    series = int(np.prod(shape.big_dims))
    part = f"1 monitor x {series:,} series"
    print(f"bench: {part}")
    folder = WORK / shape.name / "big" / "trained"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    env = settings_env(folder, monitors_file, folder / "mlruns")
    start = LAST_DAY - dt.timedelta(days=shape.big_days - 1)
    train_args = ["train.py", "--start", str(start), "--end", str(LAST_DAY), "--promote"]
    train = run("train", train_args, env, folder)
    query = monitors_file.parent / "events_daily.sql"
    bare_args = ["bench/monitors.py", "--measure", str(database), str(query), str(LAST_DAY)]
    bare = run("bare query", bare_args, env, folder)
    deploy_args = ["deploy.py", "--date", str(LAST_DAY), "--dry-run"]
    deploy = run("deploy", deploy_args, env, folder)
    alerting = check_results(folder, ["big"])
    over = deploy["wall"] - bare["wall"]
    return [
        measured(part, f"train {shape.big_days - 1} days (seeds the state store)", train),
        measured(part, "bare query of the scored day (sqlite3, fetchall)", bare,
                 note=bare["out"].strip()),
        measured(part, "deploy --dry-run of the scored day", deploy,
                 note="alerts" if alerting else "no alert"),
        target(part, "train wall s", train["wall"], "<= 300", train["wall"] <= 300),
        target(part, "train peak RSS MB", train["rss_mb"], "<= 2048", train["rss_mb"] <= 2048),
        target(part, "deploy - bare query, s", over, "<= 30", over <= 30),
        target(part, "deploy peak RSS MB", deploy["rss_mb"], "<= 2048",
               deploy["rss_mb"] <= 2048),
    ]  # fmt: skip


def bare_query(database: str, query_file: str, day: str) -> int:
    """Run inside a measured process: the query for ``day`` through sqlite3, every row
    fetched, with the dates bound as SQLAlchemy binds them on SQLite (ISO text)."""
    first = dt.date.fromisoformat(day)
    sql = "\n".join(
        line for line in Path(query_file).read_text().splitlines() if not line.startswith("--")
    )
    connection = sqlite3.connect(database)
    binds = {"start": first.isoformat(), "end": (first + dt.timedelta(days=1)).isoformat()}
    rows = connection.execute(sql, binds).fetchall()
    connection.close()
    print(f"{len(rows):,} aggregated rows")
    return 0


# --- the table -----------------------------------------------------------------------------


def alert_note(alerting: list[str], faults: dict[str, str]) -> str:
    faulted = ", ".join(f"{name} {kind}" for name, kind in faults.items())
    return f"alerting: {', '.join(alerting) or 'none'} (faults: {faulted})"


def measured(part: str, step: str, result: dict, note: str = "") -> dict:
    return {
        "part": part, "step": step, "wall_s": round(result["wall"], 2),
        "peak_rss_mb": round(result["rss_mb"]), "value": "", "target": "", "met": "",
        "note": note,
    }  # fmt: skip


def target(part: str, step: str, value: float, limit: str = "", met: bool | None = None):
    return {
        "part": part, "step": step, "wall_s": "", "peak_rss_mb": "", "value": round(value, 2),
        "target": limit, "met": "" if met is None else ("yes" if met else "NO"), "note": "",
    }  # fmt: skip


def write_table(rows: list[dict], path: Path) -> None:
    print(f"\n{'part':<27}{'step':<62}{'wall s':>9}{'RSS MB':>8}{'value':>9}  target   met")
    for r in rows:
        print(
            f"{r['part']:<27}{r['step']:<62}{r['wall_s']:>9}{r['peak_rss_mb']:>8}"
            f"{r['value']:>9}  {r['target']:<8} {r['met']}"
        )
        if r["note"]:
            print(f"{'':<29}{r['note']}")
    save_csv(rows, path)


if __name__ == "__main__":
    sys.exit(main())
