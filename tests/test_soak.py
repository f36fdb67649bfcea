"""Soak: a backfill of 400 consecutive days against PostgreSQL, alerts mailed to a real SMTP
server, keeps its memory flat, writes one result folder per day and never mails a day twice."""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from conftest import QUERY, ROOT, clean_environment, server_url, settings_in, smtp_env
from volume_monitor import jobs
from volume_monitor.demo import DemoSpec, write_demo

SOAK_DAYS = 400
TRAIN_DAYS = 90
LAST = dt.date(2026, 6, 30)
FIRST_SCORED = LAST - dt.timedelta(days=SOAK_DAYS - 1)
MAX_GROWTH_MB = 25  # of the backfill process, between days 51-100 and days 351-400


def backfill_sampling_memory(tmp_path, env: dict[str, str]) -> list[tuple[int, float]]:
    """Run the backfill as cron would (``deploy.py --start --end --notify``) and sample its
    resident memory every 0.2 s: (days written so far, MB)."""
    command = ["deploy.py", "--start", str(FIRST_SCORED), "--end", str(LAST), "--notify"]
    console = tmp_path / "console.txt"  # a file, not a pipe nobody reads until the end
    with console.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / command[0]), *command[1:]], cwd=tmp_path,
            env={**clean_environment(), **env}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        samples = _sample(process, tmp_path / "results" / "default")
    assert process.wait(timeout=600) == 0, console.read_text()[-3000:]
    return samples


def _sample(process: subprocess.Popen, results: Path) -> list[tuple[int, float]]:
    samples = []
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        rss = next((int(r.split()[1]) for r in status.splitlines() if r.startswith("VmRSS")), 0)
        if not rss:  # exited, not yet reaped
            break
        days = len(_day_folders(results)) if results.is_dir() else 0
        samples.append((days, rss / 1024))
        time.sleep(0.2)
    return samples


def _day_folders(results: Path) -> list[Path]:
    """The days' folders (not one being built beside its place, nor the models' files)."""
    return sorted(
        p for p in results.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "models"
    )  # fmt: skip


def day_before(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


@pytest.mark.slow
def test_backfill_of_400_days_on_postgresql_is_flat_complete_and_mails_each_day_once(
    tmp_path, smtp_server
):
    port, inbox = smtp_server
    url = server_url("postgresql")
    spec = DemoSpec(LAST, days=SOAK_DAYS + TRAIN_DAYS, events_per_day=1000, seed=3)
    write_demo(create_engine(url), spec, replace=True)
    env = {"VM_DATABASE_URL": url, "VM_QUERY": str(QUERY), "VM_TIMEZONE": "UTC", **smtp_env(port)}
    settings = settings_in(tmp_path, **env)
    jobs.train(settings, FIRST_SCORED - dt.timedelta(days=TRAIN_DAYS), FIRST_SCORED, promote=True)

    samples = backfill_sampling_memory(tmp_path, env)

    early = statistics.median(mb for days, mb in samples if 50 <= days < 100)
    late = statistics.median(mb for days, mb in samples if 350 <= days < 400)
    print(f"soak: resident {early:.0f} MB on days 51-100, {late:.0f} MB on days 351-400, "
          f"{max(mb for _, mb in samples):.0f} MB at most, {len(samples)} samples")  # fmt: skip
    assert late - early < MAX_GROWTH_MB, f"memory grew from {early:.0f} to {late:.0f} MB"

    folders = _day_folders(settings.results_dir / "default")
    expected = [str(FIRST_SCORED + dt.timedelta(days=n)) for n in range(SOAK_DAYS)]
    assert [p.name for p in folders] == expected
    summaries = [json.loads((p / "summary.json").read_text()) for p in folders]
    assert all((p / "scores.csv").is_file() and (p / "histogram.png").is_file() for p in folders)

    alerted = sorted(s["date"] for s in summaries if s["alert"])
    assert alerted, "the demo's faults alert on some days"
    assert sorted(s["date"] for s in summaries if s["notified"]) == alerted
    dates = [re.search(r"\d{4}-\d{2}-\d{2}", m["Subject"]).group() for m in inbox.messages]
    resolved = [d for d, m in zip(dates, inbox.messages, strict=True) if "resolved" in m["Subject"]]
    mailed = [d for d in dates if d not in resolved]
    assert sorted(mailed) == alerted, "one email per alerting day, none twice"
    alerting = {s["date"]: s["alert"] for s in summaries}
    ends = [d for d, alert in alerting.items() if not alert and alerting.get(day_before(d))]
    assert sorted(resolved) == sorted(ends), "one resolved notice after each alerting stretch"

    again = jobs.backfill(settings, LAST - dt.timedelta(days=59), LAST, notify=True)
    assert len(again) == 60
    assert len(inbox.messages) == len(dates), "a second backfill mails nothing already sent"
