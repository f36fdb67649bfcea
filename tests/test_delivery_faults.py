"""An alert is delivered exactly once — tonight or by the next run — whatever goes wrong
between the scored day and the inbox: labels that break headers or plots, a full results
disk, an address the server cannot take, a run killed while the server is slow or after the
message left, a server that drops the connection before its 250, a damaged outbox record,
plots deleted before a retry, a server that trickles its answer. Each case runs ``deploy.py``
as cron does, against real SMTP servers on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines, free_port, run, smtp_env, start
from volume_monitor import state

LAST = dt.date(2026, 6, 30)
DAYS = 120
# The monitor's segments: labels a header, a plot title or a spreadsheet could choke on.
BROKEN, MATH = "web\r\nmobile", "$x^$ price"
SEGMENTS = ["plain", BROKEN, MATH, "ünï code", "a,b=c"]
STORE = "state/volume-monitor.db"


def write_history(path: Path) -> None:
    """``DAYS`` days of daily counts per segment; on ``LAST`` and the day before, the two
    awkward segments fall to a twentieth of their volume."""
    rng = np.random.default_rng(5)
    rows = []
    for number in range(DAYS):
        day = LAST - dt.timedelta(days=DAYS - 1 - number)
        for index, segment in enumerate(SEGMENTS):
            level = 400 + 150 * index + (60 if day.weekday() < 5 else -80)
            count = int(rng.normal(level, level * 0.04))
            if day >= LAST - dt.timedelta(days=1) and segment in (BROKEN, MATH):
                count //= 20
            rows.append((day.isoformat(), segment, count))
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE daily (date TEXT, segment TEXT, n INTEGER)")
        connection.executemany("INSERT INTO daily VALUES (?, ?, ?)", rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An install with one monitor, ``odd``, trained on the history before ``LAST - 1``."""
    folder = tmp_path_factory.mktemp("odd")
    (folder / "data").mkdir()
    write_history(folder / "data" / "odd.db")
    (folder / "sql").mkdir()
    (folder / "sql" / "odd.sql").write_text(
        "SELECT date, segment, SUM(n) AS count FROM daily\n"
        "WHERE date >= :start AND date < :end GROUP BY date, segment\n"
    )
    (folder / "monitors.yml").write_text(
        "monitors:\n  odd:\n    database_url: sqlite:///data/odd.db\n    query: sql/odd.sql\n"
        "    owner: data platform\n"
    )
    end = LAST - dt.timedelta(days=1)
    trained = run("train.py", "--end", str(end), "--promote", cwd=folder)
    assert trained.returncode == 0, trained.stderr
    return folder


@pytest.fixture
def install(trained, tmp_path) -> Path:
    copy = tmp_path / "install"
    shutil.copytree(trained, copy)
    return copy


def deploy(install: Path, day: dt.date = LAST, **env: str) -> subprocess.CompletedProcess:
    return run("deploy.py", "--date", str(day), cwd=install, **env)


def started(install: Path, day: dt.date = LAST, **env: str) -> subprocess.Popen:
    """``deploy.py`` started in the background."""
    return start("deploy.py", "--date", str(day), cwd=install, **env)


def delivery(install: Path, day: dt.date = LAST) -> state.Delivery | None:
    with state.open_store(f"sqlite:///{install / STORE}") as store:
        return store.delivery("odd", day, "email", "alert")


def wait_for(condition, seconds: float = 60.0) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, "timed out waiting"
        time.sleep(0.1)


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def attachments(message) -> list[str]:
    return sorted(p.get_filename() for p in message.walk() if p.get_content_maintype() == "image")


@pytest.fixture
def slow_smtp_port():
    """A server that accepts connections and then waits, or trickles, before its greeting:
    ``accepted`` counts the connections; ``trickle`` set, it sends one byte of a greeting
    every half second, forever."""

    class Slow:
        accepted = 0
        trickle = False

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    open_connections = []

    def serve(connection):
        greeting = b"220 slowly.example.com ESMTP " + b"." * 10_000
        for byte in greeting:
            if stop.wait(0.5):
                return
            if Slow.trickle:
                try:
                    connection.send(bytes([byte]))
                except OSError:
                    return

    def accept():
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except TimeoutError:
                continue
            Slow.accepted += 1
            open_connections.append(connection)
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    Slow.port = listener.getsockname()[1]
    yield Slow
    stop.set()
    thread.join()
    for connection in open_connections:
        connection.close()
    listener.close()


# --- labels --------------------------------------------------------------------------------


def test_labels_with_line_breaks_and_math_reach_the_inbox_with_their_plots(install, smtp_server):
    port, inbox = smtp_server
    result = deploy(install, **smtp_env(port))
    assert result.returncode == 0, result.stderr

    [message] = inbox.messages
    assert "\r" not in message["Subject"] and "\n" not in message["Subject"]
    assert message["Subject"].startswith(f"[volume-monitor] odd {LAST}: 2 anomalous series")
    body = text_of(message)
    assert "- web mobile: " in body and "- $x^$ price: " in body
    assert attachments(message) == ["histogram.png", "volume.png"]
    folder = install / "results" / "odd" / str(LAST)
    assert (folder / "volume.png").read_bytes().startswith(b"\x89PNG")
    assert "plots:" not in result.stderr, "every plot was drawn"
    assert delivery(install).status == "sent"


# --- the results disk ------------------------------------------------------------------------


def test_a_full_results_disk_fails_the_run_but_not_the_alert(install, smtp_server, small_disk):
    port, inbox = smtp_server
    result = deploy(install, **smtp_env(port), VM_RESULTS_DIR=str(small_disk / "results"))

    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "cannot write the results to" in line and "No space left on device" in line
    [message] = inbox.messages
    assert message["Subject"].startswith(f"[volume-monitor] odd {LAST}: 2 anomalous series")
    assert "Plots no longer available: histogram.png, volume.png." in text_of(message)
    assert delivery(install).status == "sent"


# --- addresses -------------------------------------------------------------------------------


def test_an_address_the_server_cannot_take_is_refused_alone(install, smtp_server):
    port, inbox = smtp_server
    env = smtp_env(port, to="oncall@example.com, jörg@exämple.com")
    result = deploy(install, **env)

    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "refused recipient(s): jörg@exämple.com" in line
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["oncall@example.com"]
    assert deploy(install, **env).returncode == 0 and len(inbox.messages) == 1, "not sent again"


# --- runs killed, servers that never confirm ------------------------------------------------


def test_a_run_killed_while_the_server_is_slow_sends_the_alert_with_the_next_run(
    install, smtp_server, slow_smtp_port
):
    process = started(install, **{**smtp_env(slow_smtp_port.port), "SMTP_TIMEOUT": "60"})
    wait_for(lambda: slow_smtp_port.accepted == 1)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert delivery(install).status == "pending", "kept: it never left"

    port, inbox = smtp_server
    result = deploy(install, LAST + dt.timedelta(days=1), **smtp_env(port))
    assert result.returncode == 0, result.stderr
    [late] = [m for m in inbox.messages if f"{LAST}: 2 anomalous" in text_of(m)]
    assert "Sent late" in text_of(late)
    assert delivery(install).status == "sent"
    deploy(install, LAST + dt.timedelta(days=1), **smtp_env(port))
    assert len([m for m in inbox.messages if f"{LAST}: 2 anomalous" in text_of(m)]) == 1


def test_a_server_that_drops_the_connection_before_its_250_gets_the_alert_once(
    install, smtp_server
):
    port, inbox = smtp_server
    inbox.then = "drop"
    result = deploy(install, **smtp_env(port))

    assert result.returncode == 0, result.stderr
    assert "the server took the message but did not confirm it" in result.stderr
    assert len(inbox.messages) == 1, "no retry inside the run"
    assert delivery(install).status == "sent"
    inbox.then = "answer"
    assert deploy(install, **smtp_env(port)).returncode == 0
    assert deploy(install, LAST + dt.timedelta(days=1), **smtp_env(port)).returncode == 0
    assert [m["Subject"] for m in inbox.messages].count(inbox.messages[0]["Subject"]) == 1


def test_a_run_killed_after_the_message_left_never_sends_it_again(install, smtp_server):
    port, inbox = smtp_server
    inbox.then = "hang"
    process = started(install, **{**smtp_env(port), "SMTP_TIMEOUT": "60"})
    wait_for(lambda: len(inbox.messages) == 1)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert delivery(install).status == "handed over"

    inbox.then = "answer"
    result = deploy(install, LAST + dt.timedelta(days=1), **smtp_env(port))
    assert result.returncode == 0, result.stderr
    assert [m for m in inbox.messages if f"odd {LAST}:" in m["Subject"]] == inbox.messages[:1]


# --- what waits in the outbox -----------------------------------------------------------


def fail_yesterday(install: Path) -> None:
    """Score ``LAST - 1`` (an alert) with the SMTP server down: it waits in the outbox."""
    failed = deploy(install, LAST - dt.timedelta(days=1), **smtp_env(free_port()))
    assert failed.returncode == 3, failed.stderr
    assert delivery(install, LAST - dt.timedelta(days=1)).status == "failed"


def test_a_damaged_outbox_record_is_reported_and_tonight_still_goes_out(install, smtp_server):
    fail_yesterday(install)
    with sqlite3.connect(install / STORE) as connection:
        connection.execute("UPDATE deliveries SET payload = '{\"kind\": \"al' WHERE date = ?",
                           (str(LAST - dt.timedelta(days=1)),))  # fmt: skip

    port, inbox = smtp_server
    result = deploy(install, **smtp_env(port))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert (
        f"email: alert of odd {LAST - dt.timedelta(days=1)}: the outbox record is damaged" in line
    )
    [message] = inbox.messages
    assert message["Subject"].startswith(f"[volume-monitor] odd {LAST}: ")
    assert delivery(install, LAST - dt.timedelta(days=1)).status == "abandoned"
    assert deploy(install, **smtp_env(port)).returncode == 0, "reported once"


def test_a_waiting_alert_whose_plots_were_deleted_goes_without_them(install, smtp_server):
    fail_yesterday(install)
    yesterday = install / "results" / "odd" / str(LAST - dt.timedelta(days=1))
    for plot in yesterday.glob("*.png"):
        plot.unlink()

    port, inbox = smtp_server
    result = deploy(install, **smtp_env(port))
    assert result.returncode == 0, result.stderr
    [message] = inbox.messages
    body = text_of(message)
    late, tonight = body.split(f"== odd: odd {LAST}:")
    assert "Sent late" in late and "Plots no longer available: histogram.png, volume.png." in late
    assert "Plots attached: histogram.png, volume.png." in tonight
    assert attachments(message) == ["histogram.png", "volume.png"], "tonight's plots only"


def test_a_trickling_server_holds_the_run_no_longer_than_the_delivery_deadline(
    install, smtp_server, slow_smtp_port
):
    slow_smtp_port.trickle = True
    env = {**smtp_env(slow_smtp_port.port), "SMTP_TIMEOUT": "5", "VM_DELIVERY_TIMEOUT": "4"}
    began = time.monotonic()
    result = deploy(install, **env)
    took = time.monotonic() - began

    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "email: no answer within 4 s (VM_DELIVERY_TIMEOUT)" in line
    assert took < 40, took
    assert delivery(install).status == "failed"

    port, inbox = smtp_server
    assert deploy(install, **smtp_env(port)).returncode == 0
    [message] = inbox.messages
    assert "LATE" in message["Subject"]
