"""Every route × every parameter × a hostile value, as each role: never a 5xx, never a traceback.

The routes and their parameters (path, query, form and query-model fields, uploads) are read from
the router, like the authorization matrix, so a new route or field is swept without anyone adding
it here. Runs on PostgreSQL, which refuses what SQLite stores (NUL in text, integers past the
column's range, Infinity in JSON). The admin sweeps every route × parameter × value; the other
roles sweep every route × value with the parameters in turn (they are mostly refused before any
parameter is read, which the admin sweep is not).
"""

from __future__ import annotations

import functools
import logging
import time
from urllib.parse import quote_from_bytes

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.models import Role
from app.run_kinds import KINDS
from app.schemas.export import ComparisonExport, DemoExport
from tests.conftest import make_settings
from tests.routes.test_authorization import app_routes
from tests.utils.factories import make_comparison, make_model_version, make_project, make_user
from tests.utils.web import csrf_from, login

DEEP = 100_000
HOSTILE: dict[str, bytes] = {
    "nul": b"a\x00b",
    "surrogate": b"\xed\xa0\x80",  # U+D800 as a client's (invalid) UTF-8
    "2**70": str(2**70).encode(),
    "-1": b"-1",
    "inf": b"inf",
    "nan": b"nan",
    "long": b"x" * 100_000,
    "deep-json": b"[" * DEEP + b"]" * DEEP,
}
# A URL holds at most 64 KiB (the test client refuses more; servers refuse far less): in a path
# or a query the long and deep values are cut to this many characters (up to three each, escaped).
URL_ROOM = 18_000
# Fields read from the query string by hand (the export page) or as a run kind's config.
EXPORT_FIELDS = sorted(
    {"what", "project", "archive", "split"}
    | set(ComparisonExport.model_fields)
    | set(DemoExport.model_fields)
)
RUN_CONFIG_FIELDS = sorted({name for spec in KINDS.values() for name in spec.config.model_fields})
EXTRA_FIELDS = {
    ("GET", "/export/preview"): [("query", n) for n in EXPORT_FIELDS],
    ("GET", "/export/download"): [("query", n) for n in EXPORT_FIELDS],
    ("GET", "/export"): [("query", n) for n in EXPORT_FIELDS],
    ("POST", "/admin/runs"): [("config", n) for n in RUN_CONFIG_FIELDS],
}
# A config field is sent with a kind whose config has it, so that the kind's schema reads it.
KIND_OF_FIELD = {
    name: kind.value for kind, spec in reversed(list(KINDS.items())) for name in spec.config.model_fields
}
BASELINE = {
    "kind": "dpo",
    "method": "dpo",
    "project": "demo",
    "slug": "demo",
    "what": "comparisons",
    "min_new_judgments": "10",
}
# Routes a logged-in sweep leaves out because they end its own session.
ENDS_SESSION = {("POST", "/logout"), ("POST", "/account/password")}


def _params(dependant, out: dict[tuple[str, str], object]) -> None:  # type: ignore[no-untyped-def]
    for param in dependant.path_params:
        out.setdefault(("path", param.name), None)
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name in model.model_fields:
                out.setdefault(("query", name), None)
        else:
            out.setdefault(("query", param.name), None)
    for param in dependant.body_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, info in model.model_fields.items():
                out.setdefault(("form", name), info.default)
        else:
            out.setdefault(("file", param.name), None)
    for sub in dependant.dependencies:
        _params(sub, out)


def routes_and_params(app) -> list[tuple[str, str, dict[tuple[str, str], object]]]:  # type: ignore[no-untyped-def]
    found = []
    for route in app_routes(app):
        for method in sorted(route.methods):
            params: dict[tuple[str, str], object] = {}
            _params(route.dependant, params)
            for place, name in EXTRA_FIELDS.get((method, route.path), []):
                params.setdefault((place, name), None)
            found.append((method, route.path, params))
    assert len(found) > 50, f"only {len(found)} routes found: is the walk reading the router?"
    return found


def _baseline(name: str, default: object) -> bytes:
    if name in BASELINE:
        return BASELINE[name].encode()
    if name.endswith("id"):
        return b"1"
    if default is None or default is ... or type(default).__name__ == "PydanticUndefinedType":
        return b"x"
    if isinstance(default, bool):
        return b"true" if default else b""
    return str(default).encode()


@functools.cache
def _escaped(raw: bytes) -> str:
    """`raw` percent-escaped for a path, a query or a form, brackets left as they are (legal in
    all three, and read back the same): the deep JSON then costs its length, not three times it,
    in every parser on the way, the test client's included."""
    return quote_from_bytes(raw, safe=b"[]")


def _request(method: str, path: str, params: dict, attacked: tuple[str, str], value: bytes):  # type: ignore[no-untyped-def]
    """The URL, body and content type of one request: every parameter at a plain value but one."""
    url = path
    query, form, files = [], [], {}
    for (place, name), default in params.items():
        raw = value if (place, name) == attacked else _baseline(name, default)
        if place in ("path", "query") and len(raw) > URL_ROOM:
            raw = raw[: URL_ROOM // 2] + raw[-URL_ROOM // 2 :]  # still balanced brackets
        if place == "path":
            url = url.replace("{" + name + "}", _escaped(raw))
        elif place == "query":
            if (place, name) == attacked:
                query.append(f"{name}={_escaped(raw)}")
        elif place == "form":
            if attacked[0] == "config" and name == "kind":
                raw = KIND_OF_FIELD[attacked[1]].encode()
            form.append(f"{name}={_escaped(raw)}")
        elif place == "config":
            if (place, name) == attacked:
                form.append(f"{name}={_escaped(raw)}")
        else:
            files[name] = ("data.jsonl", raw if (place, name) == attacked else b'{"prompt": "hi"}\n')
    if query:
        url += "?" + "&".join(query)
    if files:
        fields = {k: v for k, v in (pair.split("=", 1) for pair in form)}
        return url, {"files": files, "data": fields}
    if method == "POST":
        return url, {
            "content": "&".join(form).encode(),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        }
    return url, {}


@pytest.fixture
def pg_app(pg_url: str):  # type: ignore[no-untyped-def]
    from app.web.app import create_app

    application = create_app(make_settings(pg_url))
    yield application
    application.state.engine.dispose()


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


def test_no_hostile_value_reaches_a_server_error(pg_app) -> None:  # type: ignore[no-untyped-def]
    from app.services import tokens

    secrets = {}
    with pg_app.state.sessionmaker() as session, session.begin():
        make_user(session, "victim", Role.rater)  # id 1: the baseline id of the user routes
        project = make_project(session, "demo")
        make_comparison(session, project, [{"role": "user", "content": "hi"}], "a", "b")
        make_model_version(session, "base")
        for role in Role:
            user = make_user(session, f"user-{role.value}", role)
            secrets[role] = tokens.create_token(session, user=user, name="t")[1]

    routes = routes_and_params(pg_app)
    caught = _Tracebacks()
    root = logging.getLogger()
    root.addHandler(caught)
    failures: list[str] = []
    sent = 0
    started = time.monotonic()
    try:
        for role_turn, role in enumerate([None, Role.rater, Role.researcher, Role.admin]):
            with TestClient(pg_app, raise_server_exceptions=False) as client:
                headers = {"accept": "text/html"}
                if role is not None:
                    assert login(client, f"user-{role.value}").status_code == 303
                    headers["X-CSRF-Token"] = csrf_from(client.get("/account/password").text)
                else:
                    headers["X-CSRF-Token"] = csrf_from(client.get("/login").text)
                for index, (method, path, params) in enumerate(routes):
                    if role is not None and (method, path) in ENDS_SESSION:
                        continue
                    request_headers = dict(headers)
                    if path.startswith("/api/") and role is not None:
                        request_headers["authorization"] = f"Bearer {secrets[role]}"
                    attacked_all = list(params) or [("none", "")]
                    for turn, (label, value) in enumerate(HOSTILE.items()):
                        if role is Role.admin:
                            targets = attacked_all
                        elif turn == (index + role_turn) % len(HOSTILE):
                            targets = [attacked_all[(index + role_turn) % len(attacked_all)]]
                        else:
                            continue
                        for attacked in targets:
                            url, kwargs = _request(method, path, params, attacked, value)
                            kwargs.setdefault("headers", {})
                            kwargs["headers"] = {**request_headers, **kwargs["headers"]}
                            response = client.request(method, url, follow_redirects=False, **kwargs)
                            sent += 1
                            if response.status_code >= 500:
                                failures.append(
                                    f"{method} {path} {attacked[0]}:{attacked[1]}={label} as "
                                    f"{role and role.value}: {response.status_code} {response.text[:120]!r}"
                                )
    finally:
        root.removeHandler(caught)
    elapsed = time.monotonic() - started
    print(f"hostile sweep: {sent} requests in {elapsed:.1f} s")
    logged = [f"{r.name}: {r.getMessage()[:160]}" for r in caught.records]
    assert failures == [], "\n".join(failures[:80]) + f"\n({len(failures)} in all)"
    assert logged == [], "\n".join(logged[:40])
