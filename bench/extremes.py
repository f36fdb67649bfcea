"""Extreme-day benchmark, run by hand (not part of the tests):

    .venv/bin/python bench/extremes.py                                   # full size, ~8 min
    .venv/bin/python bench/extremes.py --agents 20000 --series 20000     # checks it, ~4 min

(With ``--series`` under 200,000 the default ceiling lets the day through and its row says
``NO``.) ``bench/results/extremes-baseline.csv`` is the full size measured on a 2-core machine.

On SQLite only (a file under ``bench/work/extremes/``, rebuilt each run), one installation
trained once on a normal year (``train.py --start D0-365 --end D0 --promote``: 365 days of
``wide_spec`` from ``bench/run.py``, ``--history-events`` a day, about 530 series), then two
extreme days, each step in its own process through ``bench/run.py``'s ``run()`` (wall seconds,
peak RSS from ``RUSAGE_CHILDREN``):

1. **Many distinct user agents.** ``deploy.py --dry-run`` of a normal day D0 twice (the
   second, with the user-agent cache warm, is the usual night); D1, the next day, replaced by
   ``--agents`` events (default 5,000,000), each with its own user agent (the first template
   of eight real OS families in ``bench/run.py`` and ``volume_monitor.demo`` whose build
   number tells the events apart); D2, a normal day. Targets: D1's peak RSS <= 1.5 GB; D2's
   wall and peak RSS near D0's (here: at most 1.25 x each). The user-agent cache file's
   entries and size are noted after D1 and D2.
2. **Many series.** D3 replaced by ``--series`` events (default 1,000,000), each with its own
   ``channelid`` (``c0``, ``c1``, ...): one series each. Scored with the default
   ``VM_MAX_SERIES`` (200,000; target: the day refused, exit 1, one line "more than
   VM_MAX_SERIES"), then with ``VM_MAX_SERIES=2000000`` (target: scored, exit 0; the size of
   its ``scores.csv`` noted). D4, a normal day: near D0's again.

The extreme days are written by SQLite itself (``INSERT ... SELECT`` over a recursive count):
seconds, not minutes. The two deploys of D3 may end with 1 (refused, or stopped by
``VM_RUN_TIMEOUT``, 2 h by default) without ending the benchmark: they run through this
script's ``--expect`` launcher (the deploy as its child, exit 0 when the child's code is one of
those accepted; its code and last line of stderr in the table). Their wall is the child's own,
their peak RSS the larger of the two (Linux carries a reaped child's peak up to its parent; the
launcher holds about 20 MB). Every other step must exit with 0. The table is printed and
written to ``bench/results/extremes-latest.csv``. The full size needs about 2 GB of disk for
the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sqlite3
import string
import subprocess
import sys
import time
from pathlib import Path

import run as bench  # bench/run.py, beside this script

WORK = bench.WORK / "extremes"
DATABASE = WORK / "events.db"
D0 = bench.SCORED_DAY  # the usual night; the model is trained on the 365 days before it
D1, D2, D3, D4 = (D0 + dt.timedelta(days=n) for n in range(1, 5))  # D2 and D4 normal days
MB = 1024 * 1024
BIG_DAY_RSS_MB = 1536  # target: the big day's peak RSS, 1.5 GB
NEAR = 1.25  # target: a night after an extreme day costs at most this times the usual night
# The templates' placeholders as SQL of the event's number n; (b, c) tells any two apart.
FIELDS = {
    "a": "(100 + n % 30)", "b": "(4000 + n / 1000)", "c": "(n % 1000)", "d": "(1 + n % 8)",
    "e": "(14 + n % 4)", "f": "(10 + n % 5)",
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--agents",
        type=int,
        default=5_000_000,
        help="events of the big day, each its own user agent (%(default)s)",
    )
    parser.add_argument(
        "--series",
        type=int,
        default=1_000_000,
        help="events of the many-series day, each its own series (%(default)s)",
    )
    parser.add_argument(
        "--history-events", type=int, default=3_000, help="events per normal day (%(default)s)"
    )
    parser.add_argument("--out", type=Path, default=bench.RESULTS / "extremes-latest.csv")
    parser.add_argument("--expect", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.expect:
        return launch(*args.expect)
    began = time.perf_counter()
    env = install(args.history_events)
    rows = many_agents(env, args.agents)
    rows += many_series(env, args.series, usual=rows[1])
    print(f"\n{'engine':<8}{'day':<14}{'step':<50}{'wall s':>8}{'RSS MB':>8}{'exit':>5}"
          f"  {'target':<34}{'met':<5}notes")  # fmt: skip
    for r in rows:
        print(
            f"{r['engine']:<8}{r['day']:<14}{r['step']:<50}{r['wall_s']:>8}{r['peak_rss_mb']:>8}"
            f"{r['exit_code']:>5}  {r['target']:<34}{r['met']:<5}{r['notes']}"
        )
    bench.save_csv(rows, args.out)
    print(f"bench: whole run {time.perf_counter() - began:.0f}s")
    return 0


# --- building ------------------------------------------------------------------------------


def install(history_events: int) -> dict[str, str]:
    """A fresh installation under ``WORK``: normal days from D0 - 365 to D4 and the settings
    of its runs; the model trained by the first measured step."""
    from sqlalchemy import create_engine

    from volume_monitor.demo import write_demo

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    began = time.perf_counter()
    url = f"sqlite:///{DATABASE}"
    spec = bench.wide_spec(D4, bench.HISTORY_DAYS + 5, history_events, 60)
    engine = create_engine(url)
    events = write_demo(engine, spec, replace=True)
    engine.dispose()
    print(f"bench: {events:,} events, {len(spec.series)} series, {spec.first_day}..{D4}, "
          f"in {time.perf_counter() - began:.0f}s")  # fmt: skip
    return {
        "VM_DATABASE_URL": url, "VM_QUERY": str(bench.QUERY),
        "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'mlruns' / 'mlflow.db'}",
        "VM_RESULTS_DIR": str(WORK / "results"),
        "VM_STATE_URL": f"sqlite:///{WORK / 'state.db'}",
        "VM_LOG_FILE": str(WORK / "extremes.log"),
        "VM_UA_CACHE": str(WORK / "agents.json"),
        "VM_TIMEZONE": "UTC",
    }  # fmt: skip


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def pick(index: str, values: list[str]) -> str:
    """SQL: the element of ``values`` at the integer expression ``index`` modulo their
    number."""
    cases = " ".join(f"WHEN {i} THEN {quoted(v)}" for i, v in enumerate(values))
    return f"CASE ({index}) % {len(values)} {cases} END"


def template_sql(template: str) -> str:
    """SQL: ``template`` (``str.format`` placeholders of :data:`FIELDS`) for the event n."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts += [quoted(literal)] if literal else []
        parts += [FIELDS[name]] if name is not None else []
    return " || ".join(parts)


def unique_agents_sql() -> tuple[str, list[str]]:
    """SQL of a user agent per event n, distinct for every n, and the OS families it goes
    through (in turn): per family, its first template whose build number is ``{b}.{c}``."""
    from volume_monitor.demo import TEMPLATES

    chosen = {}
    for family, templates in TEMPLATES.items():
        for template in templates + bench.MORE_TEMPLATES.get(family, []):
            if template and ("{b}.{c}" in template or "{c}.{b}" in template):
                chosen[family] = template_sql(template)
                break
    cases = " ".join(f"WHEN {i} THEN {sql}" for i, sql in enumerate(chosen.values()))
    return f"CASE n % {len(chosen)} {cases} END", list(chosen)


def replace_day(day: dt.date, events: int, channel: str, action: str, agent: str) -> dict:
    """Replace ``day``'s events with ``events`` new ones, made by SQLite: the event n (0, 1,
    ...) at a time spread in order over the day, its ``channelid``, ``actioncode`` and
    ``user_agent`` the SQL expressions given, of n. Returns the events, distinct agents and
    distinct channels written, and the seconds it took."""
    began = time.perf_counter()
    bounds = {"start": str(day), "end": str(day + dt.timedelta(days=1))}
    within = "created_at >= :start AND created_at < :end"
    connection = sqlite3.connect(DATABASE)
    connection.execute("PRAGMA synchronous = OFF")
    with connection:
        connection.execute(f"DELETE FROM activityhistory WHERE {within}", bounds)
        connection.execute(
            "WITH RECURSIVE numbers(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM numbers "
            "WHERE n < :events - 1) "
            "INSERT INTO activityhistory (created_at, channelid, actioncode, user_agent) "
            "SELECT printf('%s %02d:%02d:%02d', :start, s / 3600, s / 60 % 60, s % 60), "
            f"{channel}, {action}, {agent} "
            "FROM (SELECT n, n * 86400 / :events AS s FROM numbers)",
            {**bounds, "events": events},
        )
    connection.execute("ANALYZE")
    written, agents, channels = connection.execute(
        "SELECT COUNT(*), COUNT(DISTINCT user_agent), COUNT(DISTINCT channelid) "
        f"FROM activityhistory WHERE {within}",
        bounds,
    ).fetchone()
    connection.close()
    seconds = time.perf_counter() - began
    print(f"bench: {day} holds {written:,} events, {agents:,} distinct user agents, "
          f"{channels:,} channels, written in {seconds:.1f}s")  # fmt: skip
    return {"events": written, "agents": agents, "channels": channels, "seconds": seconds}


# --- measuring -----------------------------------------------------------------------------


def many_agents(env: dict[str, str], agents: int) -> list[dict]:
    start = D0 - dt.timedelta(days=bench.HISTORY_DAYS)
    train = bench.run(["train.py", "--start", str(start), "--end", str(D0), "--promote"], env)
    rows = [row(f"{start}..", "train 365 normal days", train)]
    deploy(D0, env)  # the first night fills the user-agent cache
    measured = deploy(D0, env)
    usual = row(D0, "deploy, normal day (UA cache warm)", measured, notes=scored(measured))
    rows.append(usual)

    agent, families = unique_agents_sql()
    written = replace_day(D1, agents, pick("n / 8", list(bench.CHANNELS)),
                          pick("n / 64", bench.ACTIONS), agent)  # fmt: skip
    big = deploy(D1, env)
    cache = cache_note(Path(env["VM_UA_CACHE"]))
    notes = (
        f"{written['events']:,} events, {written['agents']:,} distinct agents over "
        f"{len(families)} OS families, written in {written['seconds']:.0f}s; {scored(big)}; "
        f"after: {cache}"
    )
    met = big["rss_mb"] <= BIG_DAY_RSS_MB
    rows.append(row(D1, f"deploy, {agents:,} distinct agents", big,
                    target=f"peak RSS <= {BIG_DAY_RSS_MB} MB", met=met, notes=notes))  # fmt: skip
    rows.append(next_night(D2, env, usual, "the big day", Path(env["VM_UA_CACHE"])))
    return rows


def many_series(env: dict[str, str], series: int, usual: dict) -> list[dict]:
    from volume_monitor.config import DEFAULTS
    from volume_monitor.demo import TEMPLATES
    from volume_monitor.results import SCORES_FILE, day_dir

    agent = TEMPLATES["Windows"][0].format(a=124, b=6367, c=91)
    written = replace_day(D3, series, "'c' || n", quoted("view"), quoted(agent))
    filled = f"{written['events']:,} events, {written['channels']:,} channels"
    ceiling = DEFAULTS["VM_MAX_SERIES"]  # set: a value in the shell must not change the step
    refused = deploy(D3, {**env, "VM_MAX_SERIES": ceiling}, accept=(0, 1))
    met = refused["code"] == 1 and "more than VM_MAX_SERIES" in refused["message"]
    rows = [
        row(D3, f"deploy, {series:,} series, VM_MAX_SERIES={int(ceiling):,}", refused,
            target='exit 1, "more than VM_MAX_SERIES"', met=met,
            notes=f"{filled}, written in {written['seconds']:.0f}s; {outcome(refused)}"),
    ]  # fmt: skip
    raised = deploy(D3, {**env, "VM_MAX_SERIES": "2000000"}, accept=(0, 1))
    scores = day_dir(Path(env["VM_RESULTS_DIR"]), D3) / SCORES_FILE
    size = f"{scores.stat().st_size / MB:.1f} MB" if scores.is_file() else "missing"
    rows.append(row(D3, f"deploy, {series:,} series, VM_MAX_SERIES=2,000,000", raised,
                    target="scored (exit 0)", met=raised["code"] == 0,
                    notes=f"{outcome(raised)}; {SCORES_FILE} {size}"))  # fmt: skip
    rows.append(next_night(D4, env, usual, "the many-series day"))
    return rows


def next_night(day: dt.date, env: dict, usual: dict, after: str, cache: Path | None = None):
    """The normal day after an extreme one, against ``usual``, the usual night's row."""
    measured = deploy(day, env)
    wall = measured["wall"] / usual["wall_s"]
    rss = measured["rss_mb"] / usual["peak_rss_mb"]
    notes = f"x{wall:.2f} wall, x{rss:.2f} RSS of the usual night; {scored(measured)}"
    if cache is not None:
        notes += f"; after: {cache_note(cache)}"
    return row(day, f"deploy, normal day after {after}", measured,
               target=f"wall, RSS <= {NEAR} x usual night", met=max(wall, rss) <= NEAR,
               notes=notes)  # fmt: skip


def deploy(day: dt.date, env: dict[str, str], accept: tuple[int, ...] = (0,)) -> dict:
    """``deploy.py --dry-run --date day``, measured by ``bench.run``; a step that may end
    with another exit code than 0 (one of ``accept``) runs through :func:`launch`. Adds
    ``code`` and the last line of its stderr, ``message``."""
    command = ["deploy.py", "--dry-run", "--date", str(day)]
    if accept == (0,):
        return {**bench.run(command, env), "code": 0, "message": ""}
    codes = ",".join(map(str, accept))
    measured = bench.run(["bench/extremes.py", "--expect", codes, *command], env)
    *out, last = measured["out"].splitlines()
    code, wall, message = last.split(" ", 2)
    return {**measured, "out": "\n".join(out), "code": int(code), "wall": float(wall),
            "message": message}  # fmt: skip


def launch(accepted: str, script: str, *arguments: str) -> int:
    """Run inside a measured process: ``script`` as a child; its output passed on, then one
    line: its exit code, wall seconds and the last line of its stderr. Exits 0 when the code
    is one of ``accepted`` (comma-separated), else with the code (1 for 0)."""
    began = time.perf_counter()
    child = subprocess.run(
        [sys.executable, str(bench.ROOT / script), *arguments], capture_output=True, text=True
    )
    wall = time.perf_counter() - began
    sys.stdout.write(child.stdout)
    sys.stderr.write(child.stderr)
    lines = child.stderr.strip().splitlines() or [""]
    print(f"{child.returncode} {wall:.3f} {lines[-1]}")
    codes = {int(code) for code in accepted.split(",")}
    return 0 if child.returncode in codes else child.returncode or 1


def scored(measured: dict) -> str:
    """The deploy's verdict, from its line on stdout."""
    lines = measured["out"].strip().splitlines() or [""]
    return lines[-1].split("; results in")[0].split(": ", 1)[-1]


def outcome(measured: dict) -> str:
    """A deploy's verdict (exit 0), or its exit code and last line of stderr."""
    if measured["code"] == 0:
        return scored(measured)
    return f"exit {measured['code']}: {measured['message']}"


def cache_note(path: Path) -> str:
    if not path.is_file():
        return "no UA cache file"
    stored = json.loads(path.read_text(encoding="utf-8"))
    regular, once = stored["regular"], stored["once"]
    return (
        f"UA cache {len(regular) + len(once):,} entries ({len(regular):,} regular), "
        f"{path.stat().st_size / MB:.1f} MB"
    )


def row(day, step: str, measured: dict, target: str = "", met=None, notes: str = "") -> dict:
    return {
        "engine": "sqlite", "day": str(day), "step": step, "wall_s": round(measured["wall"], 2),
        "peak_rss_mb": round(measured["rss_mb"]), "exit_code": measured.get("code", 0),
        "target": target, "met": "" if met is None else ("yes" if met else "NO"),
        "notes": notes,
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
