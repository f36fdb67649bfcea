"""The web service (``volume-monitor serve``): pages over the state store and ``results/``,
feedback and silences from the browser, ``/metrics`` and ``/healthz``.

Pages: ``/`` (every monitor), ``/monitors/<name>`` (thirteen weeks of days, the series that
alert most), ``/monitors/<name>/days/<date>`` (a day as its alert tells it) and
``/monitors/<name>/series?<dimension>=<value>&…`` (a series' history, drawn by plotly.js served
from the package). Every value from a database is escaped by the templates; the charts' data
travels as JSON escaped for HTML. Writes are guarded by :mod:`volume_monitor.web.guard`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST

from volume_monitor import clock, feedback, state
from volume_monitor.alerting import silences
from volume_monitor.config import MonitorSpec, Settings
from volume_monitor.errors import ConfigError, VolumeMonitorError
from volume_monitor.web import guard, metrics, views

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_SILENCE_DAYS = 365
VERDICT_LABELS = {
    "normal": "false alarm",
    "expected": "expected",
    "incident": "incident",
    "new-level": "new level",
}


class NotFound(Exception):
    """A monitor, day or file the service does not have."""


def templates() -> Environment:
    environment = Environment(
        loader=PackageLoader("volume_monitor.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    environment.globals.update(verdicts=VERDICT_LABELS, query=urlencode)
    return environment


@lru_cache(maxsize=1)
def plotly_js() -> bytes:
    """plotly.js as the ``plotly`` package ships it: served by this app, never from a CDN."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def create_app(settings: Settings, today: Callable[[], dt.date] | None = None) -> FastAPI:
    """The app over ``settings``' state store and results; ``today`` gives the date pages
    count back from (default: today in ``VM_TIMEZONE``)."""
    today = today or (lambda: clock.today(settings))
    store = state.open_store(settings.state_url, read_only=not settings.web_token)
    pages = templates()
    registry = metrics.registry_for(settings, store, today)
    app = FastAPI(title="volume-monitor", docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        csrf = request.cookies.get(guard.CSRF_COOKIE) or guard.new_csrf()
        html = pages.get_template(name).render(
            csrf=csrf, writable=bool(settings.web_token), **context
        )
        response = HTMLResponse(html, status_code=status)
        response.set_cookie(guard.CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    def monitor_named(name: str) -> MonitorSpec:
        try:
            return settings.monitor(name)
        except ConfigError:
            raise NotFound(f"no monitor named {name!r}") from None

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> HTMLResponse:
        return page(request, "error.html", 404, title="Not found", message=str(exc))

    @app.exception_handler(guard.Refused)
    async def refused(request: Request, exc: guard.Refused) -> HTMLResponse:
        log.warning("web: write refused from %s: %s", _client(request), exc)
        return page(request, "error.html", exc.status, title="Refused", message=str(exc))

    @app.exception_handler(ConfigError)
    async def bad_request(request: Request, exc: ConfigError) -> HTMLResponse:
        return page(request, "error.html", 400, title="Not done", message=str(exc))

    @app.exception_handler(VolumeMonitorError)
    async def unavailable(request: Request, exc: VolumeMonitorError) -> HTMLResponse:
        log.error("web: %s", exc)
        return page(request, "error.html", 503, title="Not available", message=str(exc))

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        return page(request, "index.html", monitors=views.overview(settings, store, today()))

    @app.get("/monitors/{name}", response_class=HTMLResponse)
    def monitor(request: Request, name: str):
        view = views.monitor_view(monitor_named(name), store, today())
        return page(request, "monitor.html", view=view)

    @app.get("/monitors/{name}/model", response_class=HTMLResponse)
    def model(request: Request, name: str):
        view = views.model_view(settings, monitor_named(name), store, today())
        return page(request, "model.html", view=view)

    @app.get("/monitors/{name}/model/plots/{file}")
    def model_plot(name: str, file: str):
        path = views.model_plot(settings, monitor_named(name).name, store, today(), file)
        if path is None:
            raise NotFound(f"no model plot {file!r}")
        return FileResponse(path, media_type="image/png")

    @app.get("/monitors/{name}/days/{day}", response_class=HTMLResponse)
    def day(request: Request, name: str, day: str):
        view = views.day_view(settings, monitor_named(name), store, _date(day))
        return page(request, "day.html", view=view, said=request.query_params.get("said"))

    @app.get("/monitors/{name}/days/{day}/plots/{file}")
    def plot(name: str, day: str, file: str):
        path = views.plot_path(settings, monitor_named(name).name, _date(day), file)
        if path is None:
            raise NotFound(f"no plot {file!r} for {day}")
        return FileResponse(path, media_type="image/png")

    @app.get("/monitors/{name}/series", response_class=HTMLResponse)
    def series(request: Request, name: str):
        spec = monitor_named(name)
        labels = dict(request.query_params)
        view = views.series_view(spec, store, labels, today())
        return page(request, "series.html", view=view, status=200 if view.found else 404)

    async def write(request: Request, name: str, day: str | None):
        """The monitor, form, day (from the path, else the form) and author of a write the
        guard lets through."""
        spec, form = monitor_named(name), await _form(request)
        guard.check_write(settings.web_token, request.headers, form, _csrf(request))
        return spec, form, _date(day or form.get("day", "")), _author(form)

    @app.post("/monitors/{name}/days/{day}/feedback")
    @app.post("/monitors/{name}/feedback")  # a series page: the day is the form's field
    async def keep_feedback(request: Request, name: str, day: str | None = None):
        spec, form, date, author = await write(request, name, day)
        verdict, matchers, note = _verdict(form), _matchers(spec, form), form.get("note")
        kept = feedback.add(store, spec.name, date, verdict, matchers, note, today(), author)
        log.info("web: feedback #%s (%s) on %s %s by %s", kept.id, kept.verdict, name, date, author)
        return _back_to_day(name, date.isoformat(), f"feedback #{kept.id}: {kept.verdict}")

    @app.post("/monitors/{name}/days/{day}/silence")
    @app.post("/monitors/{name}/silence")  # a series page: the form's day is where to go back
    async def keep_silence(request: Request, name: str, day: str | None = None):
        spec, form, back_to, author = await write(request, name, day)
        until = today() + dt.timedelta(days=_days(form.get("days", "")) - 1)
        kept = silences.add(
            store, spec, _matchers(spec, form), until, form.get("reason", ""), today(), author
        )
        log.info("web: silence #%s of %s until %s by %s", kept.id, name, until, author)
        return _back_to_day(name, back_to.isoformat(), f"silence #{kept.id} until {until}")

    @app.get("/metrics")
    def prometheus_metrics():
        return Response(metrics.render(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz():
        try:
            revision = store.revision()
        except VolumeMonitorError as exc:
            return PlainTextResponse(f"state store unreachable: {exc}", status_code=503)
        return PlainTextResponse(f"ok (state store at revision {revision})")

    @app.get("/static/plotly.min.js")
    def plotly():
        return Response(plotly_js(), media_type="text/javascript", headers=_cached())

    @app.get("/static/app.css")
    def stylesheet():
        return FileResponse(STATIC / "app.css", media_type="text/css", headers=_cached())

    return app


def _cached() -> dict[str, str]:
    return {"Cache-Control": "public, max-age=86400"}


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise NotFound(f"{text!r} is not a day (YYYY-MM-DD)") from None


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: str(value) for key, value in form.items()}


def _csrf(request: Request) -> str | None:
    return request.cookies.get(guard.CSRF_COOKIE)


def _author(form: dict[str, str]) -> str:
    name = " ".join(form.get("name", "").split())
    if not name:
        raise ConfigError("say who you are: the name field is empty")
    return name[:100]


def _matchers(spec: MonitorSpec, form: dict[str, str]) -> dict[str, str]:
    """The series a verdict or silence is about, in the monitor's dimension order: the labels
    of the form's ``series`` (a day page's choice, as JSON; empty: the whole day) and its
    ``match.<dimension>`` fields."""
    matchers: dict[str, str] = {}
    chosen = form.get("series", "").strip()
    if chosen:
        try:
            labels = json.loads(chosen)
        except ValueError:
            labels = None
        if not isinstance(labels, dict):
            raise ConfigError("the series field names no series")
        matchers.update({str(k): str(v) for k, v in labels.items()})
    prefix = "match."
    matchers.update({k[len(prefix) :]: v for k, v in form.items() if k.startswith(prefix)})
    order = {name: position for position, name in enumerate(spec.dimensions)}
    return dict(sorted(matchers.items(), key=lambda item: order.get(item[0], len(order))))


def _verdict(form: dict[str, str]) -> str:
    verdict = form.get("verdict", "")
    if verdict not in VERDICT_LABELS:
        raise ConfigError(f"verdict must be one of {', '.join(VERDICT_LABELS)}, not {verdict!r}")
    return verdict


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise ConfigError(f"days must be a whole number, not {text!r}") from None
    if not 1 <= days <= MAX_SILENCE_DAYS:
        raise ConfigError(f"days must be from 1 to {MAX_SILENCE_DAYS}, not {days}")
    return days


def _back_to_day(name: str, day: str, said: str) -> RedirectResponse:
    return RedirectResponse(
        f"/monitors/{quote(name)}/days/{day}?{urlencode({'said': said})}", status_code=303
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
