"""The alert email, delivered to a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from email.utils import parseaddr
from html.parser import HTMLParser

import pandas as pd
import pytest

from conftest import LAST_DAY, STALL_DAY, free_port, smtp_env
from volume_monitor import jobs
from volume_monitor.alerting import content, policy
from volume_monitor.alerting.channels import Context
from volume_monitor.alerting.channels import email as email_channel
from volume_monitor.config import Route
from volume_monitor.errors import AlertDeliveryError


def images(message) -> dict[str, tuple[bytes, str]]:
    """Every image part of ``message``: file name -> (bytes, Content-ID)."""
    return {
        part.get_filename(): (part.get_payload(decode=True), part["Content-ID"].strip("<>"))
        for part in message.walk()
        if part.get_content_maintype() == "image"
    }


class HtmlBody(HTMLParser):
    """The table rows (cell texts) and image sources of an HTML body."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.sources: list[str] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.sources.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def body_text(message) -> str:
    return message.get_body(preferencelist=("plain", "html")).get_content()


def test_alert_arrives_with_subject_recipients_series_and_histogram(trained_settings, smtp_server):
    port, inbox = smtp_server
    settings = trained_settings(**smtp_env(port, to="oncall@example.com, lead@example.com"))

    result = jobs.score_day(settings, LAST_DAY)

    assert len(inbox.messages) == 1
    message, envelope = inbox.messages[0], inbox.envelopes[0]
    anomalies = result.summary.anomalies
    assert message["Subject"].startswith(f"[volume-monitor] {LAST_DAY}: {anomalies} anomalous")
    assert sorted(envelope.rcpt_tos) == ["lead@example.com", "oncall@example.com"]
    assert envelope.mail_from == "monitor@example.com"
    body = body_text(message)
    scores = pd.read_csv(result.folder / "scores.csv")
    listed = scores[scores["is_anomaly"]].head(content.MAX_LISTED).itertuples()
    positions = [
        re.search(
            re.escape(
                f"{r.channelid}/{r.actioncode}/{r.os_family}: {r.count} events, "
                f"expected {r.expected_low}-{r.expected_high}"
            )
            + r" \([+-]\d+%\), "
            + re.escape(f"{r.direction}, {r.cause} ("),
            body,
        ).start()
        for r in listed
    ]
    assert len(positions) >= 2 and positions == sorted(positions), "in the order of scores.csv"
    assert " spreads, score " in body
    worst = scores[scores["is_anomaly"]].iloc[0]
    assert f"; {content.why_flagged(worst)})" in body
    assert "with models:/volume-monitor@production (version 1)" in body
    summary = json.loads((result.folder / "summary.json").read_text())
    assert summary["notified"] is True and summary["notified_at"]


def test_html_email_has_the_table_the_plots_inline_and_the_model_version(
    trained_settings, smtp_server
):
    port, inbox = smtp_server
    result = jobs.score_day(trained_settings(**smtp_env(port)), LAST_DAY)

    [message] = inbox.messages
    assert message.get_body(preferencelist=("plain",)).get_content_type() == "text/plain"
    html = message.get_body(preferencelist=("html",)).get_content()
    parsed = HtmlBody(html)
    header = list(email_channel.TABLE_COLUMNS)
    start = parsed.rows.index(header)  # the series table, inside the layout's tables
    rows = [row for row in parsed.rows[start + 1 :] if len(row) == len(header)]
    scores = pd.read_csv(result.folder / "scores.csv", keep_default_na=False)
    flagged = scores[scores["is_anomaly"]].head(content.MAX_LISTED)
    assert len(rows) == len(flagged) >= 2
    for row, (_, expected) in zip(rows, flagged.iterrows(), strict=True):
        series = f"{expected['channelid']}/{expected['actioncode']}/{expected['os_family']}"
        assert row[:3] == [
            series,
            str(expected["count"]),
            f"{expected['expected_low']}-{expected['expected_high']}",
        ]
        assert re.fullmatch(r"[+-]\d+%", row[3])
        assert row[4:6] == [expected["direction"], expected["cause"]]
        assert row[6].endswith(" spreads") and float(row[7]) == pytest.approx(
            expected["score"], abs=1e-3
        )
        assert row[8].startswith(content.why_flagged(expected)) and row[8].endswith(
            ("over its range", "under its range", "moved with its group")
        )
    found = images(message)
    assert sorted(found) == ["histogram.png", "volume.png"]
    for name, (data, content_id) in found.items():
        assert data == (result.folder / name).read_bytes() and data.startswith(b"\x89PNG")
        assert f"cid:{content_id}" in parsed.sources
    assert "models:/volume-monitor@production (version 1)" in html
    worst = f"{flagged.iloc[0]['channelid']}/{flagged.iloc[0]['actioncode']}"
    assert worst in message["Subject"] and message["Subject"].endswith(flagged.iloc[0]["direction"])


def test_dry_run_sends_nothing_but_writes_the_message(trained_settings, smtp_server):
    port, inbox = smtp_server
    settings = trained_settings(**smtp_env(port))

    result = jobs.score_day(settings, LAST_DAY, dry_run=True)

    assert inbox.messages == []
    assert result.summary.alert is True and result.summary.notified is False
    written = (result.folder / "email.txt").read_text()
    assert f"Subject: [volume-monitor] {LAST_DAY}" in written
    assert "To: oncall@example.com" in written


def test_without_smtp_settings_the_message_is_written_for_the_user(trained_settings):
    settings = trained_settings()
    result = jobs.score_day(settings, STALL_DAY)
    written = (result.folder / "email.txt").read_text()
    assert "mobile/view/Android" in written
    assert "low" in written and "Attachments: histogram.png" in written
    assert result.summary.notified is False


def test_rerun_does_not_email_again_unless_forced(trained_settings, smtp_server):
    port, inbox = smtp_server
    settings = trained_settings(**smtp_env(port))

    jobs.score_day(settings, LAST_DAY)
    again = jobs.score_day(settings, LAST_DAY)
    assert len(inbox.messages) == 1
    assert again.summary.notified is True, "the earlier delivery stays recorded"

    jobs.score_day(settings, LAST_DAY, force=True)
    assert len(inbox.messages) == 2


def test_smtp_down_keeps_results_and_raises_delivery_error(trained_settings):
    settings = trained_settings(**smtp_env(free_port()))  # nothing listens there

    with pytest.raises(AlertDeliveryError) as caught:
        jobs.score_day(settings, LAST_DAY)

    assert caught.value.exit_code == 3
    assert "email (127.0.0.1:" in str(caught.value) and "kept for the next run" in str(caught.value)
    folder = settings.results_dir / "default" / str(LAST_DAY)
    assert (folder / "scores.csv").is_file() and (folder / "histogram.png").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["notified"] is False
    assert summary["delivery_error"].startswith("email (127.0.0.1:")
    assert summary["channels"] == {"email": "failed"}


def test_missing_recipients_is_a_delivery_error(tmp_path):
    from conftest import settings_in

    settings = settings_in(tmp_path)
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, host="x"))
    with pytest.raises(AlertDeliveryError, match="ALERT_TO is empty"):
        email_channel.send(Route("email"), [], Context(settings))


def scored_day(anomalies: int, rows: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"is_anomaly": [True] * anomalies + [False] * (rows - anomalies)})


@pytest.mark.parametrize(
    ("env", "anomalies", "missing", "alert_expected", "reason_start"),
    [
        ({}, 0, False, False, None),
        ({}, 1, False, True, "1 anomalous series (threshold 1)"),
        ({"VM_ALERT_MIN_ANOMALIES": "3"}, 2, False, False, None),
        ({"VM_ALERT_MIN_ANOMALIES": "0"}, 5, False, False, None),
        (
            {"VM_ALERT_MIN_ANOMALIES": "0", "VM_ALERT_SHARE": "0.2"},
            2,
            False,
            True,
            "anomalous share 20.0%",
        ),
        ({"VM_ALERT_MIN_ANOMALIES": "0", "VM_ALERT_SHARE": "0.2"}, 1, False, False, None),
        ({"VM_ALERT_MIN_ANOMALIES": "0"}, 0, True, True, "missing day"),
    ],
)
def test_alert_rules(tmp_path, env, anomalies, missing, alert_expected, reason_start):
    from conftest import settings_in

    monitor = settings_in(tmp_path, **env).monitor()
    decision = policy.decide(scored_day(anomalies), monitor, missing)
    assert decision.alert is alert_expected
    if reason_start:
        assert decision.reasons[0].startswith(reason_start)
    else:
        assert decision.reasons == []


def test_login_as_smtp_user_and_send_as_alert_from(trained_settings, smtp_server):
    port, inbox = smtp_server
    env = smtp_env(port) | {"SMTP_USER": "relay-login", "SMTP_PASSWORD": inbox.PASSWORD}
    jobs.score_day(trained_settings(**env), LAST_DAY)
    assert inbox.logins == [("relay-login", inbox.PASSWORD)]
    assert inbox.envelopes[0].mail_from == "monitor@example.com"
    assert parseaddr(inbox.messages[0]["From"])[1] == "monitor@example.com"


def test_rejected_login_is_a_delivery_error_without_the_password(trained_settings, smtp_server):
    port, inbox = smtp_server
    env = smtp_env(port) | {"SMTP_USER": "relay-login", "SMTP_PASSWORD": "wrong-s3cret"}
    with pytest.raises(AlertDeliveryError) as caught:
        jobs.score_day(trained_settings(**env), LAST_DAY)
    assert "535" in str(caught.value) and "wrong-s3cret" not in str(caught.value)
    assert inbox.messages == []


def test_partly_refused_recipients_count_as_sent_but_fail_the_run(trained_settings, smtp_server):
    port, inbox = smtp_server
    inbox.refuse.add("typo@example.com")
    settings = trained_settings(**smtp_env(port, to="oncall@example.com, typo@example.com"))

    with pytest.raises(AlertDeliveryError, match=r"refused recipient.*typo@example\.com"):
        jobs.score_day(settings, LAST_DAY)
    summary = json.loads(
        (settings.results_dir / "default" / str(LAST_DAY) / "summary.json").read_text()
    )
    assert summary["notified"] is True
    assert summary["refused_recipients"] == ["typo@example.com"]

    jobs.score_day(settings, LAST_DAY)  # the next run does not send it again
    assert [e.rcpt_tos for e in inbox.envelopes] == [["oncall@example.com"]]


def test_series_moving_together_get_one_line_before_the_list(trained_settings):
    result = jobs.score_day(trained_settings(), LAST_DAY, dry_run=True)
    scores = pd.read_csv(result.folder / "scores.csv")
    web = scores[scores["channelid"] == "web"]
    flagged = int(web["is_anomaly"].sum())
    line = f"channelid=web: {flagged} of {len(web)} series high (mostly duplicate)"
    assert result.summary.groups == [line]
    written = (result.folder / "email.txt").read_text()
    assert written.index(line) < written.index("Anomalous series")


def test_group_lines_need_three_series_in_one_direction():
    scored = pd.DataFrame(
        {
            "channelid": ["web"] * 4 + ["api"] * 3,
            "is_anomaly": [True, True, True, False, True, True, False],
            "direction": ["low", "low", "low", "", "high", "low", ""],
            "cause": ["stall", "stall", "drop", "", "spike", "drop", ""],
        }
    )
    dimensions = ["channelid", "actioncode"]
    assert content.group_lines(scored, dimensions) == [
        "channelid=web: 3 of 4 series low (mostly stall)"
    ]


def test_group_lines_of_a_single_dimension_speak_of_all_series():
    scored = pd.DataFrame(
        {
            "country": ["DE", "FR", "GB", "ES"],
            "is_anomaly": [True, True, True, False],
            "direction": ["low", "low", "low", ""],
            "cause": ["drop", "drop", "stall", ""],
        }
    )
    assert content.group_lines(scored, ["country"]) == [
        "all series: 3 of 4 series low (mostly drop)"
    ]


def test_a_silenced_series_is_left_out_of_an_alert_that_others_still_raise(trained_settings):
    from volume_monitor import state
    from volume_monitor.state import Silence

    settings = trained_settings()
    first = jobs.score_day(settings, LAST_DAY, dry_run=True)
    flagged = pd.read_csv(first.folder / "scores.csv", dtype=str).query("is_anomaly == 'True'")
    assert len(flagged) >= 2, "the demo's fault day flags several series"
    worst = flagged.iloc[0]
    keys = ("channelid", "actioncode", "os_family")
    name = "/".join(worst[k] for k in keys)
    assert f"{name}: " in (first.folder / "email.txt").read_text()
    with state.open_store(settings.state_url) as store:
        matchers = {k: worst[k] for k in keys}
        store.add_silence(Silence("default", matchers, LAST_DAY, "known"))

    again = jobs.score_day(settings, LAST_DAY, dry_run=True, force=True)

    text = (again.folder / "email.txt").read_text()
    assert f"{name}: " not in text
    assert "1 more anomalous series are silenced and not listed" in text
    assert (again.summary.anomalies, again.summary.silenced) == (len(flagged) - 1, 1)
    rows = pd.read_csv(again.folder / "scores.csv", dtype=str)
    assert rows["silenced"].tolist().count("True") == 1


def test_a_missing_day_is_critical_and_does_not_list_every_series(trained_settings):
    settings = trained_settings()
    result = jobs.score_day(settings, LAST_DAY + dt.timedelta(days=1))
    text = (result.folder / "email.txt").read_text()
    assert result.summary.missing_day and result.summary.severity == "critical"
    assert "no data at all (missing day)" in text and "Severity: critical." in text
    assert "Anomalous series" not in text, "the missing day explains every series"
    summary = json.loads((result.folder / "summary.json").read_text())
    assert summary["severity"] == "critical"


def test_a_few_series_off_is_a_warning(trained_settings):
    result = jobs.score_day(trained_settings(), STALL_DAY)
    text = (result.folder / "email.txt").read_text()
    assert result.summary.severity in ("warning", "error")
    assert f"Severity: {result.summary.severity}." in text
    assert "mobile/view/Android" in text


def test_an_alert_says_how_many_days_in_a_row_a_series_has_been_off(trained_settings):
    from volume_monitor import state

    settings = trained_settings()
    first = jobs.score_day(settings, LAST_DAY, dry_run=True)
    scores = pd.read_csv(first.folder / "scores.csv", keep_default_na=False)
    worst = scores[scores["is_anomaly"]].iloc[[0]]
    name = f"{worst['channelid'].item()}/{worst['actioncode'].item()}/{worst['os_family'].item()}"
    assert "days in a row" not in (first.folder / "email.txt").read_text()
    keys = ["channelid", "actioncode", "os_family"]
    with state.open_store(settings.state_url) as store:
        for back in (1, 2):  # the two days before were flagged too; three days back were not
            earlier = worst.assign(date=str(LAST_DAY - dt.timedelta(days=back)))
            store.write_counts("default", keys, earlier, "scored")

    again = jobs.score_day(settings, LAST_DAY, dry_run=True, force=True)

    line = next(
        line for line in (again.folder / "email.txt").read_text().splitlines()
        if line.startswith(f"- {name}: ")
    )  # fmt: skip
    assert line.endswith("; off 3 days in a row)")
    assert "; off 3 days in a row</td>" in (again.folder / "email.html").read_text()


def test_an_alert_names_the_series_back_to_normal_since_the_last_alert(trained_settings):
    settings = trained_settings()
    stalled = jobs.score_day(settings, STALL_DAY)
    was = pd.read_csv(stalled.folder / "scores.csv", keep_default_na=False)
    was = was[was["is_anomaly"]]
    assert len(was) >= 2

    result = jobs.score_day(settings, LAST_DAY)
    now = pd.read_csv(result.folder / "scores.csv", keep_default_na=False)
    still = {
        tuple(r) for r in now[now["is_anomaly"]][["channelid", "actioncode", "os_family"]].values
    }
    back = [
        "/".join(r)
        for r in was[["channelid", "actioncode", "os_family"]].values
        if tuple(r) not in still
    ]
    written = (result.folder / "email.txt").read_text()
    [line] = [text for text in written.splitlines() if text.startswith("Back inside")]
    since, _, names = line.removesuffix(".").partition(": ")
    assert since == f"Back inside their range since the alert of {STALL_DAY}"
    assert sorted(names.split(", ")) == sorted(back)
    assert "mobile/view/Android" in back


def test_a_plot_that_cannot_be_drawn_is_left_out_with_a_warning(tmp_path, caplog):
    from volume_monitor import plots

    not_a_day = pd.DataFrame({"count": [1, 2]})  # no expected range: matplotlib cannot draw it
    jobs._drawn(plots.plot_volume, not_a_day, tmp_path / "volume.png", "title")
    assert not (tmp_path / "volume.png").exists()
    [record] = [r for r in caplog.records if r.name == "volume_monitor.jobs"]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("plots: a plot is left out (plot_volume): KeyError")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError):  # a file that cannot be written is the results' error
        jobs._drawn(plots.plot_histogram, [0.1, -0.2], tmp_path / "a-file" / "h.png", "t")
