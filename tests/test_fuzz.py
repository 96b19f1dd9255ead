"""Schemathesis against the app's own OpenAPI schema, in-process, on PostgreSQL.

Every operation in the schema is called with generated (valid and invalid) parameters, as a
researcher with an API token: no answer may be a server error, and every answer must match
what the schema declares for it (status code, content type, headers, body schema); a valid
request is refused only for a rule that spans several parameters, never for one of them. The web
pages are left out of the schema (`include_in_schema=False`); the one web route in it,
`/healthz`, is called the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from app.models import Judgment, Role  # noqa: E402
from app.services import tokens  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.utils.factories import make_pair, make_project, make_user  # noqa: E402

pytestmark = pytest.mark.postgres

# Examples per operation: 7 operations, each example a request (a few stream a whole export).
MAX_EXAMPLES = 30


@pytest.fixture
def fuzz_app(pg_url: str) -> Iterator[Any]:
    from app.web.app import create_app

    application = create_app(make_settings(pg_url))
    with application.state.sessionmaker() as session, session.begin():
        project = make_project(session, "fuzz", flags=["unsafe"])
        researcher = make_user(session, "rex", Role.researcher)
        rater = make_user(session, "rita", Role.rater)
        _, secret = tokens.create_token(session, user=researcher, name="fuzz")
        for k in range(3):
            pair = make_pair(session, project, f"question {k}", f"good {k}", f"bad {k}")
            session.add(
                Judgment(comparison_id=pair.id, rater_id=rater.id, project_id=project.id,
                         choice="A", strength=1, a_on_left=k % 2 == 0)
            )  # fmt: skip
    application.state.fuzz_token = secret
    yield application
    application.state.engine.dispose()


# The API's description states one rule for every text parameter: no NUL, no unpaired surrogate.
UNSTORABLE_TEXT = ("contains a NUL character", "contains an unpaired surrogate")


def _assert_a_rule_across_parameters(body: dict[str, Any]) -> None:
    """A schema-valid request may still break a rule that joins several parameters (date_from
    before date_to, CSV without message lists) or names data that does not exist (an unknown
    rater): those are refused as a whole. A refusal that names a single parameter means that the
    schema admits a value the API does not, which is a bug of the schema or of the API."""
    detail = body["detail"]
    if isinstance(detail, list):
        single = [
            p for p in detail if p["field"] not in ("query", "") and p["message"] not in UNSTORABLE_TEXT
        ]
        assert single == [], f"a schema-valid parameter was refused: {single}"


def _operations(application: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", application)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_api_answers_as_documented(fuzz_app: Any, mode: str) -> None:
    """Valid parameters (positive) and invalid ones (negative) for every operation."""
    from schemathesis import GenerationMode
    from schemathesis.checks import positive_data_acceptance
    from schemathesis.core.parameters import ParameterLocation

    headers = {"Authorization": f"Bearer {fuzz_app.state.fuzz_token}"}
    operations = _operations(fuzz_app)
    seen: dict[str, set[int]] = defaultdict(set)
    assert {op.path for op in operations} >= {"/api/v1/projects", "/api/v1/projects/{slug}/comparisons"}
    for operation in operations:
        if mode == "negative" and not list(operation.iter_parameters()):
            continue  # nothing to get wrong (the token is sent as it should be)

        strategy = operation.as_strategy(GenerationMode(mode))
        if "{slug}" in operation.path:
            # Random slugs name no project (404); half the cases ask for the seeded one.
            seeded = {"slug": "fuzz"}
            strategy = strategy | operation.as_strategy(GenerationMode(mode), path_parameters=seeded)

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,  # the same cases on every run: a failure is a repeatable one
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
                return  # its only header is the token, which every call below replaces with a valid one
            response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
            seen[case.operation.path].add(response.status_code)
            if mode == "positive" and response.status_code == 422:
                _assert_a_rule_across_parameters(response.json())

        check()
    if mode == "positive":  # the cases reached the data, not only the error answers
        assert all(200 in seen[path] for path in seen), dict(seen)
