"""Web service benchmark, run by hand (not part of the tests):

    .venv/bin/python bench/web.py                       # SQLite, plus PostgreSQL when reachable
    .venv/bin/python bench/web.py --days 1000 --series 500 --postgres none

Builds a state store holding ``--days`` scored days of ``--series`` series of the default
monitor (one alerting day in seven, a verdict on some), starts ``volume-monitor serve`` on it
in its own process, and times each page over HTTP from this process (``--requests`` each, after
one warm-up request): wall milliseconds min / median / max. The day page must answer in 200 ms
or less. The table goes to ``bench/results/web-latest.csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from volume_monitor import state  # noqa: E402
from volume_monitor.state import DayRecord, Feedback  # noqa: E402

WORK = ROOT / "bench" / "work" / "web"
RESULTS = ROOT / "bench" / "results"
LAST_DAY = dt.date(2026, 6, 30)
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
DIMENSIONS = ["channelid", "actioncode", "os_family"]
TARGET_MS = 200.0


def build_store(url: str, days: int, series: int, seed: int = 3) -> None:
    """``days`` scored days of ``series`` series ending ``LAST_DAY``, in one write."""
    rng = np.random.default_rng(seed)
    labels = [(f"ch{i % 7}", f"action{i % 11}", f"os{i}") for i in range(series)]
    dates = pd.date_range(end=LAST_DAY, periods=days)
    level = rng.uniform(20, 5000, size=series)
    counts = rng.poisson(np.outer(np.ones(days), level))
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates, series),
            "channelid": [s[0] for s in labels] * days,
            "actioncode": [s[1] for s in labels] * days,
            "os_family": [s[2] for s in labels] * days,
            "count": counts.ravel(),
        }
    )
    frame["expected_low"] = np.tile(level * 0.8, days)
    frame["expected_high"] = np.tile(level * 1.2, days)
    frame["score"] = rng.normal(0.1, 0.05, size=len(frame))
    frame["is_anomaly"] = (frame["count"] > frame["expected_high"]) | (
        frame["count"] < frame["expected_low"]
    )
    frame["direction"] = np.where(frame["is_anomaly"], "high", None)
    frame["cause"] = np.where(frame["is_anomaly"], "spike", None)
    with state.open_store(url) as store:
        store.write_counts("default", DIMENSIONS, frame, "scored")
        for day in dates:
            anomalies = int(frame.loc[frame["date"] == day, "is_anomaly"].sum())
            alert = day.day_of_week == 0
            summary = {
                "date": f"{day:%Y-%m-%d}", "monitor": "default", "rows": series,
                "anomalies": anomalies, "alert": alert, "reasons": [],
                "severity": "warning" if alert else None, "duration_seconds": 1.5,
            }  # fmt: skip
            record = DayRecord(
                "default", day.date(), "2026-07-01T03:00:00+00:00", "nightly",
                "models:/volume-monitor@production", "1", "run", series, anomalies, alert, False,
                summary,
            )  # fmt: skip
            store.record_day(record)
        for day in dates[::30]:
            store.add_feedback(Feedback("default", day.date(), "normal", {"channelid": "ch1"}))


def serve(url: str, folder: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "VM_STATE_URL": url, "VM_RESULTS_DIR": str(folder / "results"),
           "VM_LOG_FILE": str(folder / "vm.log"), "VM_MONITORS": ""}  # fmt: skip
    command = [sys.executable, "-m", "volume_monitor.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=folder, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"serve exited: {process.stderr.read().decode()}") from None
            time.sleep(0.3)
    raise SystemExit("serve did not answer within 60 s")


def timed(url: str, requests: int) -> tuple[float, float, float, int]:
    """Min, median and max wall milliseconds of ``requests`` GETs (after one warm-up), and the
    size of the page."""
    size = len(urllib.request.urlopen(url, timeout=60).read())
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        urllib.request.urlopen(url, timeout=60).read()
        times.append(1000 * (time.perf_counter() - began))
    return min(times), statistics.median(times), max(times), size


def reachable(url: str) -> bool:
    try:
        with create_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--postgres", default=POSTGRES, help="a URL, or none")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    engines = {"SQLite": f"sqlite:///{WORK / 'state.db'}"}
    if args.postgres != "none" and reachable(args.postgres):
        schema = "vm_bench_web"
        with create_engine(args.postgres, isolation_level="AUTOCOMMIT").connect() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        engines["PostgreSQL"] = f"{args.postgres}?options=-csearch_path%3D{schema}"
    pages = {
        "day": f"/monitors/default/days/{LAST_DAY}",
        "monitor": "/monitors/default",
        "series": "/monitors/default/series?channelid=ch3&actioncode=action3&os_family=os3",
        "overview": "/",
        "metrics": "/metrics",
    }
    rows = []
    for engine, url in engines.items():
        began = time.perf_counter()
        build_store(url, args.days, args.series)
        print(f"{engine}: {args.days} days x {args.series} series stored in "
              f"{time.perf_counter() - began:.0f} s")  # fmt: skip
        process = serve(url, WORK, args.port)
        try:
            for page, path in pages.items():
                low, median, high, size = timed(
                    f"http://127.0.0.1:{args.port}{path}", args.requests
                )
                rows.append([engine, args.days, args.series, page, f"{low:.1f}", f"{median:.1f}",
                             f"{high:.1f}", size])  # fmt: skip
                print(f"  {page:9} {low:7.1f} {median:7.1f} {high:7.1f} ms  ({size:,} bytes)")
        finally:
            process.terminate()
            process.wait(timeout=30)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "web-latest.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["engine", "days", "series", "page", "min_ms", "median_ms", "max_ms",
                         "bytes"])  # fmt: skip
        writer.writerows(rows)
    worst = max(float(r[5]) for r in rows if r[3] == "day")
    print(f"day page median {worst:.1f} ms (target {TARGET_MS:.0f} ms): "
          f"{'met' if worst <= TARGET_MS else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
