"""Logging in and posting forms the way a browser does (with the page's CSRF token)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from httpx import Response

from tests.utils.factories import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> Response:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )


def htmx_post(client: TestClient, url: str, token: str, data: dict[str, object]) -> Response:
    return client.post(url, data=data, headers={"HX-Request": "true", "X-CSRF-Token": token})


def assignment_id(html: str) -> int:
    match = re.search(r'name="assignment_id" value="(\d+)"', html)
    assert match, "no pair on the page"
    return int(match.group(1))
