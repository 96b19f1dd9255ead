"""The edge check on every request's text (no NUL, no unpaired surrogate, no over-deep JSON:
see app.services.storable), and the id types that keep numbers within the id columns' range.

Such text would fail deep inside a query (a 500). This ASGI middleware looks at the path, the
query string and the bodies it can read cheaply (urlencoded forms and JSON; multipart uploads are
left to the importer, which checks each line) and answers 422 naming the field before any route
runs. It sits inside the body-size limit, so the body it buffers is bounded by that limit.
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Path, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.services.storable import MAX_JSON_DEPTH, json_too_deep, printable, text_problem, value_problem

# Row ids are INTEGER columns: a number past this cannot name a row, and PostgreSQL refuses to
# compare it ("integer out of range"). In a path such an id is answered 404 like any missing
# row (app.web.app turns a path id's range error into 404); in a query or a form, 422.
DB_ID_MAX = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=DB_ID_MAX)]
IdQuery = Annotated[int, Query(ge=0, le=DB_ID_MAX)]
ID_RANGE_ERRORS = frozenset({"greater_than_equal", "less_than_equal"})

_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


def _pairs_problem(pairs: list[tuple[str, str]], place: str) -> tuple[str, str] | None:
    for name, value in pairs:
        if (reason := text_problem(name)) is not None:
            return f"{place}.{printable(name)}", "name " + reason
        if (reason := text_problem(value)) is not None:
            return f"{place}.{name}", reason
    return None


def body_problem(content_type: str, body: bytes) -> tuple[str, str] | None:
    if content_type.startswith(_FORM):
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return _pairs_problem(pairs, "form")
    if content_type.startswith(_JSON):
        if json_too_deep(body):
            return "body", f"nests deeper than {MAX_JSON_DEPTH} levels"
        try:
            parsed = json.loads(body)
        except ValueError:
            return None  # malformed JSON: the route's own parser answers it
        return value_problem(parsed, "body")
    return None


class InputGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = None
        if (reason := text_problem(scope.get("path", ""))) is not None:
            problem = ("path", reason)
        if problem is None:
            query = scope.get("query_string", b"").decode("latin-1")
            problem = _pairs_problem(parse_qsl(query, keep_blank_values=True), "query")
        content_type = ""
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                content_type = value.decode("latin-1").lower()
        if problem is None and content_type.startswith((_FORM, _JSON)):
            body, more = await _read_body(receive)
            problem = body_problem(content_type, body)
            receive = _replay(body, more, receive)
        if problem is None:
            await self.app(scope, receive, send)
            return
        await _reject(scope, send, *problem)


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    chunks = []
    extra: list[Message] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            extra.append(message)
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), extra


def _replay(body: bytes, extra: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *extra]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _reject(scope: Scope, send: Send, field: str, reason: str) -> None:
    accept = ""
    for name, value in scope.get("headers", []):
        if name == b"accept":
            accept = value.decode("latin-1")
    message = f"{field}: {reason}"
    if scope.get("path", "").startswith("/api/") or "application/json" in accept:
        body = json.dumps({"detail": [{"field": field, "message": reason}]}).encode()
        content_type = b"application/json"
    else:
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Invalid input</title>"
            f"<h1>Invalid input</h1><p>{_escape(message)}</p></html>"
        ).encode()
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
