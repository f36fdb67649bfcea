"""The alert email as a person sees it: the HTML of a dry-run-scored alert day rendered by a
real browser, Debian's ``chromium`` run headless from its command line.

Skipped with the reason when chromium is not installed; failed instead when
VM_REQUIRE_SERVICES=1 (CI installs it in ``.ci/run``).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import LAST_DAY, chromium_executable
from volume_monitor import jobs
from volume_monitor.alerting import content
from volume_monitor.alerting.channels import email as email_channel

WINDOW = (1200, 2000)
TIMEOUT = 60  # seconds for one chromium call; each takes one or two here
HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>document.title = 'pwned'</script>"


@dataclass
class Chromium:
    """Debian's chromium, headless, with a private profile; each call is one process."""

    executable: str
    home: Path
    calls: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds)

    def command(self, *flags: str) -> list[str]:
        return [
            self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={self.home / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *flags,
        ]  # fmt: skip

    def run(self, page: Path, *flags: str, timeout: float = TIMEOUT, hung: str = "") -> str:
        """Open ``page`` with ``flags``; its standard output. Fails on a non-zero exit or after
        ``timeout`` seconds (ending the whole process group), saying ``hung``."""
        env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
        }
        began = time.monotonic()
        process = subprocess.Popen(
            [*self.command(*flags), page.resolve().as_uri()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"chromium did not finish {page.name} within {timeout} s{hung}")
        finally:
            self.calls.append((f"{' '.join(flags)} {page.name}", time.monotonic() - began))
        assert process.returncode == 0, f"chromium exited {process.returncode}: {err[-2000:]}"
        return out

    def screenshot(self, page: Path, png: Path) -> None:
        self.run(page, f"--screenshot={png}")

    def dom(self, page: Path, **options) -> Page:
        """The page's DOM after it loaded (scripts run), parsed."""
        return Page(self.run(page, "--dump-dom", **options))


@pytest.fixture
def chromium(tmp_path) -> Chromium:
    executable = chromium_executable()
    home = tmp_path / "chromium"
    home.mkdir()
    browser = Chromium(executable, home)
    yield browser
    print("chromium calls:", ", ".join(f"{what}: {took:.2f} s" for what, took in browser.calls))


class Page(HTMLParser):
    """A dumped DOM: table rows (cell texts), images and links (their attributes), script
    elements, the visible text, and the body's attributes."""

    def __init__(self, html: str):
        super().__init__()
        self.html = html
        self.rows: list[list[str]] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.scripts = 0
        self.title = ""
        self.body: dict[str, str | None] = {}
        self._texts: list[str] = []
        self._cell: list[str] | None = None
        self._in: str | None = None  # script, style or title
        self.feed(html)
        self.close()

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._texts).split())

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))
        elif tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag == "body":
            self.body = dict(attrs)
        if tag in ("script", "style", "title"):
            self._in = tag
            self.scripts += tag == "script"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in is None:
            self._texts.append(data)
            if self._cell is not None:
                self._cell.append(data)

    def table(self) -> list[list[str]]:
        """The rows of the anomalous series' table, under its header."""
        header = list(email_channel.TABLE_COLUMNS)
        start = self.rows.index(header)
        return [row for row in self.rows[start + 1 :] if len(row) == len(header)]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def alert_day(trained_settings):
    """The folder of the demo's last day, an alert, scored by a dry run: email.html beside
    the plots and scores.csv."""
    result = jobs.score_day(trained_settings(), LAST_DAY, dry_run=True)
    assert result.summary.alert is True
    assert (result.folder / "email.html").is_file()
    return result


def test_the_email_renders_as_a_full_page(chromium, alert_day, tmp_path):
    png = tmp_path / "email.png"

    chromium.screenshot(alert_day.folder / "email.html", png)

    assert png_size(png) == WINDOW
    with Image.open(png) as image:
        pixels = image.convert("RGB")
        colors = pixels.getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    assert len(colors) > 200, "a blank or nearly blank page"
    assert max(count for count, _ in colors) < 0.9 * WINDOW[0] * WINDOW[1]
    # the severity bar at the top, in its colour
    band = email_channel.SEVERITY_COLORS[alert_day.summary.severity]
    rgb = tuple(int(band[i : i + 2], 16) for i in (1, 3, 5))
    assert dict((color, count) for count, color in colors).get(rgb, 0) > 10_000


def test_the_rendered_page_holds_the_table_and_the_worst_series(chromium, alert_day):
    page = chromium.dom(alert_day.folder / "email.html")

    rows = page.table()
    scores = pd.read_csv(alert_day.folder / "scores.csv", keep_default_na=False)
    flagged = scores[scores["is_anomaly"]]
    assert len(rows) == min(len(flagged), content.MAX_LISTED) >= 2
    worst = flagged.iloc[0]
    name = f"{worst['channelid']}/{worst['actioncode']}/{worst['os_family']}"
    assert rows[0][:2] == [name, str(worst["count"])], "the worst series leads the table"
    assert f"worst {name} {worst['direction']}" in page.text  # the headline
    assert page.scripts == 0


def test_the_plots_load_in_the_page(chromium, alert_day):
    folder = alert_day.folder
    page = chromium.dom(folder / "email.html")
    sources = [image["src"] for image in page.images]
    assert sources == ["histogram.png", "volume.png"]
    for source in sources:
        assert (folder / source).is_file()

    # The same page with a script that notes, once loaded, each image's decoded size.
    probe = folder / "probe.html"
    note = (
        "<script>addEventListener('load', () => document.body.setAttribute('data-loaded', "
        "Array.from(document.images, i => i.getAttribute('src') + '=' + (i.complete ? "
        "i.naturalWidth + 'x' + i.naturalHeight : 'pending')).join(' ')));</script>"
    )
    probe.write_text((folder / "email.html").read_text().replace("</body>", note + "</body>"))
    loaded = chromium.dom(probe).body.get("data-loaded") or ""
    expected = [f"{s}={'x'.join(map(str, png_size(folder / s)))}" for s in sources]
    assert loaded.split() == expected


def test_a_hostile_label_is_shown_as_text_and_never_run(chromium, tmp_path):
    line = content.SeriesLine(
        labels={"channelid": HOSTILE, "actioncode": "view", "os_family": "iOS"},
        count=7, expected=3.0, expected_low=1.0, expected_high=5.0, direction="high",
        cause="spike", deviation=2.5, score=-0.1, why="40% over its range",
    )  # fmt: skip
    alert = content.Alert(
        kind="alert", monitor="default", date=str(LAST_DAY),
        headline=f"{LAST_DAY}: 1 anomalous series, worst {line.name} high", severity="warning",
        summary=[f"A label: {HOSTILE}", f"Another: {SCRIPT}"],
        model="models:/volume-monitor@production (version 1)", model_version="1",
        owner=HOSTILE, runbook="javascript:alert(1)", dimensions=list(line.labels),
        groups=[f"channelid={HOSTILE}: 3 of 4 series high (mostly spike)"], series=[line],
        folder=str(tmp_path),
    )  # fmt: skip
    page_file = tmp_path / "hostile.html"
    page_file.write_text(email_channel.as_html([alert], inline=False), encoding="utf-8")

    # A label that ran would open alert(1), a dialog that holds headless chromium forever.
    page = chromium.dom(page_file, timeout=20, hung=": did a label run as a script?")

    assert [image.get("src") for image in page.images] == []
    assert page.scripts == 0 and page.title != "pwned"
    assert not [href for href in page.links if href.lower().startswith("javascript:")]
    assert page.table()[0][0] == f"{HOSTILE}/view/iOS"
    for shown in (f"A label: {HOSTILE}", f"Another: {SCRIPT}", f"channelid={HOSTILE}: 3 of 4"):
        assert shown in page.text
    assert HOSTILE in page.title
