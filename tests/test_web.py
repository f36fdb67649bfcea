"""The web service as its users meet it: ``volume-monitor serve`` started for real on
127.0.0.1 over a scored install, read over HTTP and in Debian's chromium driven by Playwright.

The browser tests are skipped with the reason when chromium is not installed, and fail instead
when VM_REQUIRE_SERVICES=1 (CI installs it in ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    FIRST_DAY,
    LAST_DAY,
    ROOT,
    chromium_executable,
    clean_environment,
    free_port,
    new_install,
    run,
)  # fmt: skip
from volume_monitor import state

TOKEN = "web-test-token"
DIMENSIONS = ["channelid", "actioncode", "os_family"]
HOSTILE = "<img src=x onerror=alert(1)>"
START_TIMEOUT = 60.0
DAY = str(LAST_DAY)


@dataclass
class Site:
    folder: Path
    url: str
    env: dict[str, str]

    def get(self, path: str, **headers: str) -> tuple[int, str]:
        status, body = self.fetch(path, **headers)
        return status, body.decode()

    def fetch(self, path: str, **headers: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, path: str, fields: dict[str, str], **headers: str) -> tuple[int, str, str]:
        """Status, body and ``Location`` of a form post (redirects are not followed)."""
        data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(), ""
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), error.headers.get("Location", "")

    def feedback_list(self) -> list[str]:
        done = run("volume_monitor/cli.py", "feedback", "list", cwd=self.folder, **self.env)
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith("#")]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def install(tmp_path_factory, demo_sqlite, trained_store) -> Path:
    """An install whose ``LAST_DAY`` was scored (the demo's duplicated load of channel web),
    with one more series on that day whose channel is a piece of HTML."""
    folder = new_install(tmp_path_factory.mktemp("web"), demo_sqlite, trained_store)
    models = Path("results") / "default" / "models"
    shutil.copytree(trained_store / models, folder / models)
    done = run("deploy.py", "--date", DAY, cwd=folder)
    assert done.returncode == 0, done.stderr
    with state.open_store(f"sqlite:///{folder / 'state' / 'volume-monitor.db'}") as store:
        day = store.history("default", LAST_DAY, LAST_DAY)
        hostile = day.iloc[[0]].assign(channelid=HOSTILE, is_anomaly=True, direction="high")
        rows = pd.concat([day, hostile], ignore_index=True).drop(columns="source")
        store.write_counts("default", ["channelid", "actioncode", "os_family"], rows, "scored")
    return folder


def serve(folder: Path, **env: str) -> Iterator[Site]:
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "volume_monitor" / "cli.py"),
        "serve",
        "--port",
        str(port),
    ]
    environment = {**clean_environment(), **env}
    process = subprocess.Popen(
        command, cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    site = Site(folder, f"http://127.0.0.1:{port}", env)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"serve exited {process.returncode}: {process.stderr.read()}")
            try:
                if site.get("/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"serve did not answer within {START_TIMEOUT} s")
        yield site
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def site(install) -> Iterator[Site]:
    yield from serve(install, VM_WEB_TOKEN=TOKEN)


@pytest.fixture(scope="module")
def scores(install) -> pd.DataFrame:
    return pd.read_csv(install / "results" / "default" / DAY / "scores.csv")


# --- over HTTP --------------------------------------------------------------------------------


def test_the_overview_and_the_day_page_tell_what_the_run_found(site, scores):
    status, html = site.get("/")
    assert status == 200
    assert f'<a href="/monitors/default/days/{DAY}">{DAY}</a>' in html
    assert '<tr class="state-alert">' in html
    status, html = site.get(f"/monitors/default/days/{DAY}")
    assert status == 200
    summary = json.loads((site.folder / "results" / "default" / DAY / "summary.json").read_text())
    assert f"{summary['anomalies']} anomalous of {summary['rows']} series" in html
    assert html.count('<tr class="anomaly">') == int(scores["is_anomaly"].sum()) + 1  # + hostile
    assert "histogram.png" in html
    for plot in ("histogram.png", "boundary.png"):
        status, png = site.fetch(f"/monitors/default/days/{DAY}/plots/{plot}")
        assert status == 200 and png.startswith(b"\x89PNG"), plot
    for missing in ("/monitors/nobody", f"/monitors/default/days/{DAY}/plots/..%2Fsummary.json",
                    "/monitors/default/days/2026-13-40"):  # fmt: skip
        assert site.get(missing)[0] == 404, missing


def test_the_model_page_shows_what_training_saw(site, page, screenshots):
    status, html = site.get("/monitors/default/model")
    assert status == 200 and "model version 1" in html
    for plot in ("boundary.png", "deviations.png"):
        status, png = site.fetch(f"/monitors/default/model/plots/{plot}")
        assert status == 200 and png.startswith(b"\x89PNG"), plot
    assert site.get("/monitors/default/model/plots/describe.csv")[0] == 404
    page.goto(site.url + "/monitors/default/model")
    day_boundary = page.locator("#day-boundary")
    assert day_boundary.get_attribute("src") == f"/monitors/default/days/{DAY}/plots/boundary.png"
    assert day_boundary.evaluate("image => image.naturalWidth") > 400, "the image loaded"
    rows = [r.split("\t") for r in page.locator("#describe tbody tr").all_inner_texts()]
    header = page.locator("#describe thead th").all_inner_texts()
    everything = dict(zip(header, rows[0], strict=True))
    with state.open_store(f"sqlite:///{site.folder / 'state' / 'volume-monitor.db'}") as store:
        trained = store.history("default", FIRST_DAY, LAST_DAY)  # the training window
    trained = trained[trained["channelid"] != HOSTILE]
    assert everything["dimension"] == "(all)"
    assert float(everything["count"]) == len(trained)
    assert float(everything["mean"]) == pytest.approx(trained["count"].mean(), abs=0.01)
    channels = {r[1] for r in rows if r[0] == "channelid"}
    assert channels == set(trained["channelid"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{site.folder}/mlruns/mlflow.db")
    training = client.get_run(client.get_model_version("volume-monitor", "1").run_id)
    shown = dict(r.split("\t") for r in page.locator("#alert-levels tbody tr").all_inner_texts())
    logged = {
        k.removeprefix("alert_level_").replace("_x_", " × "): f"{v:.2f}"
        for k, v in training.data.metrics.items()
        if k.startswith("alert_level_")
    }
    assert shown == logged and set(shown) >= {"series", "day", "channelid"}
    days, over = (
        int(training.data.metrics[k]) for k in ("calibration_days", "calibration_false_days")
    )
    assert (
        page.locator("#notes")
        .inner_text()
        .startswith(
            f"Model: alert levels set for about one false alert in 60 normal days; {over} in "
            f"{days} days seen held back in training."
        )
    )
    page.screenshot(path=screenshots / "model.png", full_page=True)


def test_metrics_are_the_last_runs_values_and_healthz_answers(site):
    status, text = site.get("/metrics")
    assert status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    summary = json.loads((site.folder / "results" / "default" / DAY / "summary.json").read_text())
    default = (("monitor", "default"),)
    assert samples[("volume_monitor_last_run_rows", default)] == summary["rows"]
    assert samples[("volume_monitor_last_run_anomalies", default)] == summary["anomalies"]
    assert samples[("volume_monitor_alerting", default)] == 1.0
    assert samples[("volume_monitor_outbox_size", default)] == 0.0
    assert samples[("volume_monitor_last_run_duration_seconds", default)] > 0
    scored_at = pd.Timestamp(summary["scored_at"]).timestamp()
    assert samples[("volume_monitor_last_run_timestamp_seconds", default)] == pytest.approx(
        scored_at
    )
    status, text = site.get("/healthz")
    assert (status, text.split(" ")[0]) == (200, "ok")


def test_a_write_needs_the_token_and_a_form_of_this_site(site):
    before = site.feedback_list()
    path = f"/monitors/default/days/{DAY}/feedback"
    fields = {"verdict": "incident", "name": "Ana", "series": ""}
    assert site.post(path, fields)[0] == 401
    assert site.post(path, {**fields, "token": "wrong"})[0] == 401
    status, body, _ = site.post(path, {**fields, "token": TOKEN})  # no CSRF cookie: another site
    assert status == 403 and "CSRF" in body
    assert site.post(path, fields, Authorization="Bearer wrong")[0] == 401
    assert site.feedback_list() == before
    status, _, location = site.post(
        path, {**fields, "match.channelid": "web", "note": "replayed load"},
        Authorization=f"Bearer {TOKEN}",
    )  # fmt: skip
    assert status == 303 and location.startswith(f"/monitors/default/days/{DAY}?said=")
    [added] = [line for line in site.feedback_list() if line not in before]
    assert f"default  {DAY}  incident  channelid=web  Ana  replayed load" in added
    status, body, _ = site.post(
        path, {**fields, "verdict": "maybe"}, Authorization=f"Bearer {TOKEN}"
    )
    assert status == 400 and "verdict must be one of" in body


def test_a_silence_from_the_web_is_kept_with_who_asked(site):
    path = f"/monitors/default/days/{DAY}/silence"
    fields = {
        "name": "Cy",
        "days": "3",
        "reason": "partner replays <all> week",
        "match.channelid": "web",
    }
    status, body, _ = site.post(path, {**fields, "days": "0"}, Authorization=f"Bearer {TOKEN}")
    assert status == 400 and "days must be from 1 to 365" in body
    status, _, location = site.post(path, fields, Authorization=f"Bearer {TOKEN}")
    assert status == 303 and "silence" in urllib.parse.unquote(location)
    done = run("volume_monitor/cli.py", "silence", "list", cwd=site.folder, **site.env)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "partner replays" in line]
    assert "default  channelid=web  until " in line and "active  partner replays <all> week" in line


def test_without_a_token_configured_the_service_is_read_only(install):
    for site in serve(install):
        status, html = site.get(f"/monitors/default/days/{DAY}")
        assert "Read-only: set VM_WEB_TOKEN" in html and "disabled" in html
        status, body, _ = site.post(
            f"/monitors/default/days/{DAY}/feedback", {"verdict": "normal", "name": "Ana"},
            Authorization=f"Bearer {TOKEN}",
        )  # fmt: skip
        assert status == 403 and "read-only" in body
    missing = install / "elsewhere" / "state.db"
    port = str(free_port())
    done = run("volume_monitor/cli.py", "serve", "--port", port, cwd=install,
               VM_STATE_URL=f"sqlite:///{missing}")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot use the state store" in done.stderr.splitlines()[-1]
    assert not missing.parent.exists(), "a read-only service creates nothing"


# --- in the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.dialogs = []
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("VM_SCREENSHOTS", tmp_path_factory.mktemp("screenshots")))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_overview_lists_the_monitors(site, page, screenshots):
    page.goto(site.url + "/")
    rows = page.locator("#monitors tbody tr")
    assert rows.count() == 1
    assert rows.first.inner_text().split("\t")[:4] == ["default", "—", DAY, "alert"]
    page.screenshot(path=screenshots / "overview.png", full_page=True)
    page.click("text=default")
    assert page.locator("#calendar a.state-alert").count() == 1
    page.screenshot(path=screenshots / "monitor.png", full_page=True)


def test_the_overview_lists_the_demo_monitors(install, page, screenshots):
    demo = install / "demo-install"
    demo.mkdir(exist_ok=True)
    shutil.copy(ROOT / "monitors.demo.yml", demo / "monitors.yml")
    shutil.copytree(ROOT / "sql", demo / "sql", dirs_exist_ok=True)
    shutil.copytree(install / "state", demo / "state", dirs_exist_ok=True)
    for site in serve(demo, VM_MONITORS="monitors.yml"):
        page.goto(site.url + "/")
        rows = [r.split("\t")[:4] for r in page.locator("#monitors tbody tr").all_inner_texts()]
        assert rows == [
            ["activity", "web platform team", "—", "never scored"],
            ["orders", "payments team", "—", "never scored"],
        ]
        page.screenshot(path=screenshots / "overview-demo.png", full_page=True)


def test_the_day_page_shows_the_flagged_series_and_a_hostile_label_as_text(
    site, page, scores, screenshots
):
    page.goto(f"{site.url}/monitors/default/days/{DAY}")
    flagged = page.locator("#series tr.anomaly")
    web = scores[scores["is_anomaly"]]
    assert flagged.count() == len(web) + 1
    first = flagged.nth(0).locator("td").all_inner_texts()
    assert first[1] in set(web["channelid"]) | {HOSTILE}
    texts = "\n".join(flagged.all_inner_texts())
    assert HOSTILE in texts, "the label is shown as it is"
    assert page.locator("img[src='x']").count() == 0 and page.dialogs == []
    page.screenshot(path=screenshots / "day.png", full_page=True)


def test_hovering_the_series_chart_shows_a_value(site, page, scores, screenshots):
    row = scores[scores["is_anomaly"]].iloc[0]
    query = urllib.parse.urlencode({k: row[k] for k in ("channelid", "actioncode", "os_family")})
    page.goto(f"{site.url}/monitors/default/series?{query}")
    page.wait_for_selector("#chart .main-svg")
    point = page.locator("#chart .scatterlayer .trace").nth(3).locator(".point").last
    box = point.bounding_box()  # plotly listens on the plot area drawn over the points
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.locator("#chart .hoverlayer .hovertext")
    hover.wait_for()
    assert f"{DAY}: {int(row['count'])} events" in hover.text_content()
    page.screenshot(path=screenshots / "series.png", full_page=True)


def choose_series(page, labels: dict[str, str]) -> None:
    """Tick the radio button of the series with ``labels`` on a day page."""
    for radio in page.locator("input[name=series]").all():
        value = radio.get_attribute("value")
        if value and json.loads(value) == labels:
            radio.check()
            return
    pytest.fail(f"no series {labels} on the page")


def test_incident_from_the_browser_is_kept_and_refused_without_the_token(site, page, scores):
    row = scores[scores["is_anomaly"]].iloc[1]
    labels = {k: str(row[k]) for k in ("channelid", "actioncode", "os_family")}
    before = site.feedback_list()
    page.goto(f"{site.url}/monitors/default/days/{DAY}")
    page.fill("input[name=name]", "Ben")
    choose_series(page, labels)
    page.click("button[value=incident]")
    assert "token is missing or wrong" in page.inner_text("#message")
    assert site.feedback_list() == before
    page.go_back()
    page.fill("input[name=name]", "Ben")
    page.fill("input[name=token]", TOKEN)
    choose_series(page, labels)
    page.fill("input[name=note]", "seen in the ETL log")
    page.click("button[value=incident]")
    assert page.inner_text("#said").startswith("Kept: feedback #")
    assert "incident" in page.inner_text("#feedback")
    matched = ", ".join(f"{k}={v}" for k, v in labels.items())
    [added] = [line for line in site.feedback_list() if line not in before]
    assert f"incident  {matched}  Ben  seen in the ETL log" in added


def test_training_logs_the_decision_boundary_and_its_data_to_mlflow(install, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{install / 'mlruns' / 'mlflow.db'}")
    [run_] = client.search_runs([client.get_experiment_by_name("volume-monitor").experiment_id])
    logged = {Path(a.path).name for a in client.list_artifacts(run_.info.run_id, "plots")}
    assert logged == {"histogram.png", "boundary.png", "deviations.png"}
    root = {Path(a.path).name for a in client.list_artifacts(run_.info.run_id)}
    assert "describe.csv" in root
    png = client.download_artifacts(run_.info.run_id, "plots/boundary.png", str(tmp_path))
    assert Path(png).read_bytes().startswith(b"\x89PNG")


def test_a_false_alarm_from_a_series_page_and_its_hostile_label_as_text(site, page, scores):
    row = scores[scores["is_anomaly"]].iloc[2]
    labels = {k: str(row[k]) for k in ("channelid", "actioncode", "os_family")}
    before = site.feedback_list()
    page.goto(f"{site.url}/monitors/default/series?{urllib.parse.urlencode(labels)}")
    assert page.locator("#day option").first.get_attribute("value") == DAY, "flagged, latest first"
    page.fill("input[name=name]", "Dee")
    page.fill("input[name=token]", TOKEN)
    page.click("button[value=normal]")
    assert page.url.startswith(f"{site.url}/monitors/default/days/{DAY}?said=")
    matched = ", ".join(f"{k}={v}" for k, v in labels.items())
    [added] = [line for line in site.feedback_list() if line not in before]
    assert f"{DAY}  normal  {matched}  Dee" in added
    hostile = {"channelid": HOSTILE, "actioncode": row["actioncode"], "os_family": "Android"}
    page.goto(f"{site.url}/monitors/default/series?{urllib.parse.urlencode(hostile)}")
    assert HOSTILE in page.inner_text("h1")
    assert page.locator("img[src='x']").count() == 0 and page.dialogs == []


def test_a_select_only_state_store_serves_pages_and_a_write_is_refused_in_one_line(install):
    from sqlalchemy import create_engine, make_url, text

    from conftest import SERVER_URLS, postgresql_schema

    role = f"vm_reader_{os.getpid()}"
    admin = create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
    with postgresql_schema("vm_web_ro") as url:
        schema = make_url(url).query["options"].split("=", 1)[1]
        with state.open_store(f"sqlite:///{install / 'state' / 'volume-monitor.db'}") as local:
            day, record = (
                local.history("default", LAST_DAY, LAST_DAY),
                local.day("default", LAST_DAY),
            )
        with state.open_store(url) as shared:  # at head, as the nightly job leaves it
            shared.write_counts("default", DIMENSIONS, day.drop(columns="source"), "scored")
            shared.record_day(record)
        with admin.connect() as connection:
            connection.execute(text(f"CREATE ROLE {role} LOGIN"))
            connection.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
            connection.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"))
        reader = make_url(url).set(username=role).render_as_string(hide_password=False)
        try:
            for site in serve(install, VM_STATE_URL=reader, VM_WEB_TOKEN=TOKEN):
                status, html = site.get("/")
                assert status == 200 and f">{DAY}</a>" in html
                status, body, _ = site.post(
                    f"/monitors/default/days/{DAY}/feedback", {"verdict": "normal", "name": "Ana"},
                    Authorization=f"Bearer {TOKEN}",
                )  # fmt: skip
                [message] = [line for line in body.splitlines() if 'id="message"' in line]
                assert status == 503 and "cannot use the state store" in message
                assert "permission denied" in message
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))
