"""Importing prompts, pairs and demonstrations: all or nothing, every problem named, no doubles."""

from __future__ import annotations

import csv
import io
import json
import pickle
import time
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.models import (
    Choice,
    Comparison,
    ComparisonKind,
    Completion,
    Demonstration,
    Project,
    Prompt,
)
from app.services.content import messages_hash
from app.services.importing.parse import parse_rows
from app.services.importing.schema import ImportFailed, ImportKind, ImportProblem
from app.services.importing.store import import_file
from tests.utils.factories import make_pair, make_project


def jsonl(*rows: Any) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def csv_bytes(header: list[str], *rows: list[str]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def counts(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model))
        for model in (Project, Prompt, Completion, Comparison, Demonstration)
    }


def pair(prompt: str, a: str, b: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "completion_a": a, "completion_b": b, **extra}


def failure(session: Session, project: Project, kind: str, filename: str, data: bytes):
    with pytest.raises(ImportFailed) as caught:
        import_file(session, project=project, kind=kind, filename=filename, data=data)
    return caught.value


def located(error: ImportFailed) -> set[tuple[int, str | None]]:
    return {(p.line, p.field) for p in error.problems}


def comparisons(session: Session) -> list[tuple[str, str, str, ComparisonKind, Choice | None]]:
    """(last prompt turn, text A, text B, kind, gold) of every comparison, in id order."""
    a, b = Completion.__table__.alias("a"), Completion.__table__.alias("b")
    query = (
        select(Prompt.messages, a.c.text, b.c.text, Comparison.kind, Comparison.gold_choice)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .join(a, a.c.id == Comparison.completion_a_id)
        .join(b, b.c.id == Comparison.completion_b_id)
        .order_by(Comparison.id)
    )
    return [(m[-1]["content"], ta, tb, k, g) for m, ta, tb, k, g in session.execute(query)]


# --- prompts ---------------------------------------------------------------------------------


def test_prompts_from_jsonl_with_prompt_and_messages(session: Session) -> None:
    project = make_project(session)
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a prime."},
    ]
    data = jsonl({"prompt": "What is 2+2?", "id": 7}, {"messages": conversation, "metadata": {}})
    data += b"\n   \n"  # trailing blank lines are ignored

    report = import_file(session, project=project, kind="prompts", filename="p.jsonl", data=data)

    assert (report.kind, report.rows, report.created, report.created_prompts) == (
        ImportKind.prompts,
        2,
        2,
        2,
    )
    assert report.duplicates == []
    stored = session.scalars(select(Prompt).order_by(Prompt.id)).all()
    assert [p.messages for p in stored] == [
        [{"role": "user", "content": "What is 2+2?"}],
        conversation,
    ]
    assert [p.content_hash for p in stored] == [messages_hash(p.messages) for p in stored]
    assert {p.project_id for p in stored} == {project.id}


def test_prompts_from_csv_with_multiline_field_and_messages_column(session: Session) -> None:
    project = make_project(session)
    conversation = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    conversation.append({"role": "user", "content": "and then?"})
    data = csv_bytes(
        ["prompt", "messages"],
        ["Write a haiku\nabout rain,\nplease.", ""],
        ["", json.dumps(conversation)],
    )
    data = b"\xef\xbb\xbf" + data  # Excel's UTF-8 BOM

    report = import_file(session, project=project, kind="prompts", filename="P.CSV", data=data)

    assert (report.rows, report.created) == (2, 2)
    stored = session.scalars(select(Prompt.messages).order_by(Prompt.id)).all()
    assert stored == [[{"role": "user", "content": "Write a haiku\nabout rain,\nplease."}], conversation]


def test_prompt_already_in_the_project_or_repeated_is_a_duplicate(session: Session) -> None:
    project = make_project(session)
    other = make_project(session, "other")
    make_pair(session, project, "old question", "x", "y")
    make_pair(session, other, "only elsewhere", "x", "y")  # another project's prompt: no clash
    data = jsonl(
        {"prompt": "new question"},
        {"prompt": "old question"},
        {"messages": [{"role": "user", "content": "new question"}]},  # same conversation
        {"prompt": "only elsewhere"},
    )

    report = import_file(session, project=project, kind="prompts", filename="p.jsonl", data=data)

    assert (report.rows, report.created) == (4, 2)
    assert [str(d) for d in report.duplicates] == [
        "line 2: already in the project",
        "line 3: duplicate of line 1",
    ]
    total = session.scalar(select(func.count()).where(Prompt.project_id == project.id))
    assert total == 3


# --- pairs -----------------------------------------------------------------------------------


def test_pairs_from_jsonl_store_provenance_and_gold(session: Session) -> None:
    project = make_project(session)
    data = jsonl(
        pair(
            "Capital of France?",
            "Paris.",
            "Lyon.",
            model_a="policy-v3",
            model_b="human",
            sampling_a={"temperature": 0.7, "top_p": 0.9, "seed": 1},
            gold="a",
        ),
        pair("Say hi", "hi", "hello", gold="TIE", adversarial=True),
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "2+2?"},
            ],
            "completion_a": "4",
            "completion_b": "four",
            "gold": None,
        },
    )

    report = import_file(session, project=project, kind="pairs", filename="pairs.jsonl", data=data)

    assert (report.rows, report.created, report.created_prompts, report.duplicates) == (3, 3, 3, [])
    assert comparisons(session) == [
        ("Capital of France?", "Paris.", "Lyon.", ComparisonKind.gold, Choice.A),
        ("Say hi", "hi", "hello", ComparisonKind.gold, Choice.tie),
        ("2+2?", "4", "four", ComparisonKind.regular, None),
    ]
    paris = session.scalars(select(Completion).where(Completion.text == "Paris.")).one()
    lyon = session.scalars(select(Completion).where(Completion.text == "Lyon.")).one()
    assert (paris.model_name, paris.sampling) == (
        "policy-v3",
        {"temperature": 0.7, "top_p": 0.9, "seed": 1},
    )
    assert (lyon.model_name, lyon.sampling) == ("human", None)
    stored = session.scalars(select(Prompt.messages).order_by(Prompt.id)).all()
    assert stored[2] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
    ]
    assert {c.project_id for c in session.scalars(select(Comparison))} == {project.id}


def test_pairs_from_csv_with_json_columns_and_multiline_fields(session: Session) -> None:
    project = make_project(session)
    header = ["prompt", "completion_a", "completion_b", "model_a", "sampling_a", "gold"]
    data = csv_bytes(
        header,
        ["Write code", "```py\nprint(1)\n```", "no", "m1", '{"temperature": 1.0}', "B"],
        ["Plain", "yes", "no", "", "", ""],
    )

    report = import_file(session, project=project, kind="pairs", filename="pairs.csv", data=data)

    assert (report.rows, report.created) == (2, 2)
    assert comparisons(session) == [
        ("Write code", "```py\nprint(1)\n```", "no", ComparisonKind.gold, Choice.B),
        ("Plain", "yes", "no", ComparisonKind.regular, None),
    ]
    code = session.scalars(select(Completion).where(Completion.text.startswith("```"))).one()
    assert (code.model_name, code.sampling) == ("m1", {"temperature": 1.0})
    plain = session.scalars(select(Completion).where(Completion.text == "yes")).one()
    assert (plain.model_name, plain.sampling) == (None, None)
    # missing sampling is SQL NULL (not a JSON null), so "IS NULL" filters find it
    no_sampling = select(Completion.text).where(Completion.sampling.is_(None))
    assert sorted(session.scalars(no_sampling)) == ["no", "no", "yes"]


def test_csv_problem_after_a_multiline_record_names_the_line_it_starts_on(
    session: Session,
) -> None:
    project = make_project(session)
    data = csv_bytes(
        ["prompt", "completion_a", "completion_b"],
        ["one\ntwo\nthree", "a", "b"],  # lines 2-4
        ["ok", "a", "b"],  # line 5
        ["Multi\nline", "same", "same"],  # lines 6-7: identical completions
        ["fine", "a", ""],  # line 8
    )

    error = failure(session, project, "pairs", "pairs.csv", data)

    assert located(error) == {(6, "completion_b"), (8, "completion_b")}
    assert counts(session)["comparisons"] == 0


def test_a_bad_line_in_the_middle_rejects_the_whole_file(session: Session) -> None:
    project = make_project(session)
    make_pair(session, project, "kept", "x", "y")
    session.commit()
    before = counts(session)
    rows = [pair(f"q{i}", "a", "b") for i in range(6)]
    del rows[3]["completion_b"]  # line 4

    error = failure(session, project, "pairs", "pairs.jsonl", jsonl(*rows))

    assert [str(p) for p in error.problems] == [
        "line 4, field 'completion_b': is required (a non-empty string)"
    ]
    assert error.filename == "pairs.jsonl"
    session.rollback()
    assert counts(session) == before


def test_the_callers_rollback_undoes_a_successful_import(session: Session) -> None:
    project = make_project(session)
    session.commit()
    before = counts(session)
    data = jsonl(pair("q", "a", "b", model_a="m", sampling_a={"t": 1}), pair("r", "a", "b"))

    report = import_file(session, project=project, kind="pairs", filename="p.jsonl", data=data)
    assert report.created == 2
    assert counts(session)["comparisons"] == 2
    session.rollback()

    assert counts(session) == before


def test_several_bad_lines_are_reported_together(session: Session) -> None:
    project = make_project(session)
    lines = [
        json.dumps(pair("fine", "a", "b")),
        json.dumps(pair("", "a", "b")),  # line 2: empty prompt
        '{"prompt": "broken", "completion_a": "a"',  # line 3: invalid JSON
        json.dumps(pair("x", "a", 5)),  # line 4: completion_b is a number
        "",  # line 5: blank, ignored
        json.dumps(pair("y", "a", "b", gold="C", extra=1)),  # line 6: two problems
        json.dumps(["not", "an", "object"]),  # line 7
    ]
    data = "\n".join(lines).encode()

    error = failure(session, project, "pairs", "pairs.jsonl", data)

    assert located(error) == {
        (2, "prompt"),
        (3, None),
        (4, "completion_b"),
        (6, "gold"),
        (6, "extra"),
        (7, None),
    }
    text = str(error)
    assert text.startswith("pairs.jsonl: 6 problems; nothing was imported\n  line 2, field 'prompt'")
    assert "line 3: invalid JSON" in text
    assert "line 4, field 'completion_b': must be a non-empty string, got a number" in text
    assert "line 6, field 'gold': must be A, B or tie, got 'C'" in text
    assert "line 6, field 'extra': unknown field" in text
    assert "line 7: must be a JSON object, got an array" in text
    session.rollback()
    assert counts(session)["prompts"] == 0


def test_invalid_json_line(session: Session) -> None:
    project = make_project(session)
    data = jsonl(pair("a", "b", "c")) + b"{'prompt': 'single quotes'}\n"

    error = failure(session, project, "pairs", "pairs.ndjson", data)

    (problem,) = error.problems
    assert (problem.line, problem.field) == (2, None)
    assert problem.message.startswith("invalid JSON: Expecting property name")


@pytest.mark.parametrize("gold", ["C", "yes", 1, "A or B"])
def test_bad_gold_value(session: Session, gold: Any) -> None:
    project = make_project(session)

    error = failure(session, project, "pairs", "p.jsonl", jsonl(pair("q", "a", "b", gold=gold)))

    assert [(p.line, p.field) for p in error.problems] == [(1, "gold")]
    assert "must be A, B or tie" in error.problems[0].message


def test_identical_completions_are_rejected(session: Session) -> None:
    project = make_project(session)

    error = failure(session, project, "pairs", "p.jsonl", jsonl(pair("q", "same", "same")))

    assert [str(p) for p in error.problems] == [
        "line 1, field 'completion_b': must differ from completion_a (the texts are identical)"
    ]


def test_unknown_fields_are_named_and_tolerated_ones_ignored(session: Session) -> None:
    project = make_project(session)
    data = jsonl(
        pair("q", "a", "b", id="x1", metadata={"src": "web"}, adversarial=False),
        pair("r", "a", "b", chosen="a", rejected="b"),
    )

    error = failure(session, project, "pairs", "p.jsonl", data)

    assert located(error) == {(2, "chosen"), (2, "rejected")}
    assert "completion_a, completion_b" in error.problems[0].message  # says what is expected


def test_unknown_csv_column_is_reported_once_on_the_header(session: Session) -> None:
    project = make_project(session)
    data = csv_bytes(["prompt", "reponse"], ["q1", "a"], ["q2", "b"])

    error = failure(session, project, "demos", "d.csv", data)

    assert located(error) == {(1, "reponse"), (1, "response")}


def test_pair_duplicates_within_the_file_and_across_imports(session: Session) -> None:
    project = make_project(session)
    first = jsonl(
        pair("q", "good", "bad"),
        pair("q", "bad", "good"),  # the same pair, sides swapped
        pair("q", "good", "other"),  # a new pair reusing the completion "good"
    )

    report = import_file(session, project=project, kind="pairs", filename="1.jsonl", data=first)

    assert (report.rows, report.created, report.created_prompts) == (3, 2, 1)
    assert [str(d) for d in report.duplicates] == ["line 2: duplicate of line 1"]
    assert counts(session)["completions"] == 3  # good, bad, other: "good" is stored once

    second = jsonl(pair("q", "other", "good"), pair("q", "bad", "other"), pair("new", "a", "b"))
    report = import_file(session, project=project, kind="pairs", filename="2.jsonl", data=second)

    assert (report.rows, report.created, report.created_prompts) == (3, 2, 1)
    assert [str(d) for d in report.duplicates] == ["line 1: already in the project"]
    assert counts(session) | {"projects": 0} == {
        "projects": 0,
        "prompts": 2,
        "completions": 5,
        "comparisons": 4,
        "demonstrations": 0,
    }
    assert sorted((p, a, b) for p, a, b, _, _ in comparisons(session)) == [
        ("new", "a", "b"),
        ("q", "bad", "other"),
        ("q", "good", "bad"),
        ("q", "good", "other"),
    ]


def test_pairs_reuse_a_prompt_already_in_the_project(session: Session) -> None:
    project = make_project(session)
    existing = make_pair(session, project, "old", "x", "y")

    report = import_file(
        session, project=project, kind="pairs", filename="p.jsonl", data=jsonl(pair("old", "x", "z"))
    )

    assert (report.created, report.created_prompts) == (1, 0)
    new = session.scalars(select(Comparison).where(Comparison.id != existing.id)).one()
    assert new.prompt_id == existing.prompt_id
    assert new.completion_a_id == existing.completion_a_id  # "x" reused, not copied


@pytest.mark.parametrize(
    ("kind", "filename", "data"),
    [
        ("prompts", "p.jsonl", jsonl({"prompt": "a"}, {"prompt": "b"})),
        ("pairs", "p.csv", csv_bytes(["prompt", "completion_a", "completion_b"], ["q", "1", "2"])),
        ("demos", "d.json", json.dumps([{"prompt": "q", "response": "r"}] * 1).encode()),
        ("pairs", "p.jsonl", jsonl(pair("q", "a", "b"), pair("q", "c", "d"), pair("r", "a", "b"))),
    ],
)
def test_reimporting_the_same_file_creates_nothing(
    session: Session, kind: str, filename: str, data: bytes
) -> None:
    project = make_project(session)
    first = import_file(session, project=project, kind=kind, filename=filename, data=data)
    assert first.created == first.rows > 0
    after_first = counts(session)

    again = import_file(session, project=project, kind=kind, filename=filename, data=data)

    assert (again.created, again.created_prompts) == (0, 0)
    assert len(again.duplicates) == again.rows == first.rows
    assert {d.message for d in again.duplicates} == {"already in the project"}
    assert counts(session) == after_first


# --- demonstrations --------------------------------------------------------------------------


def test_demos_from_jsonl_including_messages_ending_with_the_response(session: Session) -> None:
    project = make_project(session)
    data = jsonl(
        {"prompt": "Greet me", "response": "Hello!"},
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "I failed my exam."},
                {"role": "assistant", "content": "I'm sorry. Want to plan a retake?"},
            ]
        },
        {"prompt": "Greet me", "response": "Hello!"},  # duplicate of line 1
        {"prompt": "Greet me", "response": "Hi there!"},  # same prompt, another response
    )

    report = import_file(session, project=project, kind="demos", filename="d.jsonl", data=data)

    assert (report.rows, report.created, report.created_prompts) == (4, 3, 2)
    assert [str(d) for d in report.duplicates] == ["line 3: duplicate of line 1"]
    stored = session.execute(
        select(Prompt.messages, Demonstration.response)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .order_by(Demonstration.id)
    ).all()
    assert [tuple(row) for row in stored] == [
        ([{"role": "user", "content": "Greet me"}], "Hello!"),
        (
            [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "I failed my exam."},
            ],
            "I'm sorry. Want to plan a retake?",
        ),
        ([{"role": "user", "content": "Greet me"}], "Hi there!"),
    ]


def test_demos_from_csv(session: Session) -> None:
    project = make_project(session)
    conversation = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    data = csv_bytes(
        ["prompt", "messages", "response"],
        ["Explain\nrecursion", "", "See: recursion.\n\nSeriously: a function calling itself."],
        ["", json.dumps(conversation), ""],
    )

    report = import_file(session, project=project, kind="demos", filename="d.csv", data=data)

    assert (report.rows, report.created) == (2, 2)
    responses = session.scalars(select(Demonstration.response).order_by(Demonstration.id)).all()
    assert responses == ["See: recursion.\n\nSeriously: a function calling itself.", "A."]


def test_demo_rows_that_cannot_be_read(session: Session) -> None:
    project = make_project(session)
    answered = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    data = jsonl(
        {"prompt": "no response"},  # line 1
        {"messages": answered, "response": "B"},  # line 2: two responses
        {"messages": [{"role": "assistant", "content": "only"}]},  # line 3: no conversation
        {"messages": [{"role": "user", "content": "u"}, {"role": "system", "content": "s"}]},
    )

    error = failure(session, project, "demos", "d.jsonl", data)

    assert located(error) == {(1, "response"), (2, "response"), (3, "messages"), (4, "messages")}


# --- messages, sizes, files ------------------------------------------------------------------


def test_messages_are_validated(session: Session) -> None:
    project = make_project(session)
    data = jsonl(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "bot", "content": "q"}]},
        {"messages": [{"role": "user", "content": "  "}]},
        {"messages": []},
        {"messages": "not json"},
        {"messages": [{"role": "user", "content": "q", "name": "bob"}]},
        {"prompt": "p", "messages": [{"role": "user", "content": "q"}]},
    )

    error = failure(session, project, "pairs", "p.jsonl", data)

    messages = {p.line: p.message for p in error.problems if p.field == "messages"}
    assert messages == {
        1: "must end with a user message (the turn to answer), not with an assistant message",
        2: "message 1: role must be one of system, user, assistant, got 'bot'",
        3: "message 1: content must be a non-empty string",
        4: "must not be empty",
        5: "must be a JSON list of messages; invalid JSON: Expecting value",
        6: "message 1 has an unknown key 'name'",
        7: "give either 'prompt' or 'messages', not both",
    }


def test_size_limits(session: Session) -> None:
    project = make_project(session)
    long_text = "x" * 100_001
    many = [{"role": "user", "content": str(i)} for i in range(101)]
    data = jsonl(
        pair("q", "ok", "x" * 100_000),  # exactly at the limit: fine
        pair("q", long_text, "b"),
        {"messages": many, "completion_a": "a", "completion_b": "b"},
        pair("q", "a", "b", model_a="m" * 201),
    )

    error = failure(session, project, "pairs", "p.jsonl", data)

    assert [str(p) for p in error.problems] == [
        "line 2, field 'completion_a': is 100,001 characters long; the limit is 100,000",
        "line 3, field 'messages': has 101 messages; the limit is 100",
        "line 4, field 'model_a': is 201 characters long; the limit is 200",
    ]


def test_sampling_must_be_a_json_object(session: Session) -> None:
    project = make_project(session)
    data = csv_bytes(
        ["prompt", "completion_a", "completion_b", "sampling_a", "sampling_b"],
        ["q", "a", "b", "{temperature: 1}", "[1, 2]"],
    )

    error = failure(session, project, "pairs", "p.csv", data)

    assert located(error) == {(2, "sampling_a"), (2, "sampling_b")}


def test_json_array_problems_name_the_record(session: Session) -> None:
    project = make_project(session)
    data = json.dumps([{"prompt": "a"}, {"prompt": 3}, "b"], indent=2).encode()

    error = failure(session, project, "prompts", "p.json", data)

    assert [str(p) for p in error.problems] == [
        "record 2, field 'prompt': must be a non-empty string, got a number",
        "record 3: must be a JSON object, got a string",
    ]


@pytest.mark.parametrize(
    ("filename", "data", "expected"),
    [
        ("p.txt", b"hello", "unsupported file type .txt; use one of .jsonl, .ndjson, .json, .csv"),
        ("prompts", b"hello", "unsupported file type (none)"),
        ("p.jsonl", b"", "no rows"),
        ("p.jsonl", b"\n \n", "no rows"),
        ("p.csv", b"prompt\n", "no rows"),
        ("p.json", b"[]", "no rows"),
        ("p.json", b'{"prompt": "a"}', "a .json file must hold an array of objects, got an object"),
        ("p.jsonl", b'[{"prompt": "a"}]', "line 1: must be a JSON object, got an array"),
        ("p.json", b'{"prompt": "a"}\n{"prompt": "b"}\n', "line 2: invalid JSON: Extra data"),
        ("p.csv", b'prompt\n"open quote\n', "line 2: invalid CSV: unexpected end of data"),
    ],
)
def test_unreadable_files(session: Session, filename: str, data: bytes, expected: str) -> None:
    project = make_project(session)

    error = failure(session, project, "prompts", filename, data)

    assert expected in str(error)
    assert str(error).startswith(f"{filename}: 1 problem; nothing was imported\n")


def test_non_utf8_bytes_name_the_line(session: Session) -> None:
    project = make_project(session)
    data = jsonl({"prompt": "fine"}) + '{"prompt": "café"}\n'.encode("latin-1")

    error = failure(session, project, "prompts", "p.jsonl", data)

    (problem,) = error.problems
    assert problem.line == 2
    assert "not valid UTF-8 (byte 0xe9" in problem.message


def test_parse_rows_validates_without_touching_the_database() -> None:
    rows = parse_rows(
        kind=ImportKind.pairs,
        filename="p.jsonl",
        data=jsonl(pair("q", "a", "b", gold="b", model_b="m")),
    )

    (row,) = rows
    assert (row.line, row.messages, row.gold, row.model_b) == (
        1,
        [{"role": "user", "content": "q"}],
        Choice.B,
        "m",
    )
    assert row.prompt_hash == messages_hash(row.messages)
    with pytest.raises(ValueError):
        parse_rows(kind="comparisons", filename="p.jsonl", data=b"{}")


def test_import_failed_lists_the_first_problems_only() -> None:
    problems = [ImportProblem(i, "prompt", "must be a non-empty string") for i in range(1, 31)]

    text = str(ImportFailed("big.jsonl", problems))

    lines = text.splitlines()
    assert lines[0] == "big.jsonl: 30 problems; nothing was imported"
    assert lines[1] == "  line 1, field 'prompt': must be a non-empty string"
    assert lines[-1] == "  ... and 10 more"
    assert len(lines) == 22
    copy = pickle.loads(pickle.dumps(ImportFailed("big.jsonl", problems)))
    assert (copy.filename, copy.problems, str(copy)) == ("big.jsonl", problems, text)


def test_large_import_uses_a_bounded_number_of_queries(session: Session) -> None:
    project = make_project(session)
    make_pair(session, project, "q0", "answer 0", "other 0")  # one of the pairs already exists
    n = 3000
    provenance = {"model_a": "policy", "sampling_a": {"temperature": 0.7}}  # none on side B
    data = jsonl(*(pair(f"q{i % 1500}", f"answer {i}", f"other {i}", **provenance) for i in range(n)))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    connection = session.connection()
    event.listen(connection, "before_cursor_execute", count)
    started = time.monotonic()
    try:
        report = import_file(session, project=project, kind="pairs", filename="p.jsonl", data=data)
    finally:
        event.remove(connection, "before_cursor_execute", count)

    assert (report.created, len(report.duplicates), report.created_prompts) == (n - 1, 1, 1499)
    assert counts(session)["comparisons"] == n
    assert len(statements) < 60, statements[:5]  # not one (or more) per row
    assert time.monotonic() - started < 30


def test_a_large_file_is_written_in_batches_and_still_all_or_nothing(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.services.importing import store

    monkeypatch.setattr(store, "HELD_BYTES", 0)  # read twice: validated, then written batch by batch
    project = make_project(session)
    n = 20_000
    rows = [pair(f"q{i}", f"answer {i}", f"other {i}") for i in range(n)]
    rows[n // 2] = rows[3]  # a duplicate in a later batch names the earlier line
    inserts: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO comparisons"):
            inserts.append(len(parameters) if many else 1)

    connection = session.connection()
    event.listen(connection, "before_cursor_execute", count)
    try:
        report = import_file(session, project=project, kind="pairs", filename="p.jsonl", data=jsonl(*rows))
        # The same rows with one bad line near the end: rejected whole, nothing more stored.
        bad = [pair(f"new {i}", "x", "y") for i in range(n)]
        bad[-3] = pair("new", "same", "same")
        error = failure(session, project, "pairs", "bad.jsonl", jsonl(*bad))
    finally:
        event.remove(connection, "before_cursor_execute", count)

    assert (report.rows, report.created) == (n, n - 1)
    assert [str(p) for p in report.duplicates] == [f"line {n // 2 + 1}: duplicate of line 4"]
    assert sum(inserts) == n - 1 and len(inserts) >= n // store.BATCH  # several batches, none per row
    assert max(inserts) <= store.BATCH
    assert located(error) == {(n - 2, "completion_b")}
    assert counts(session)["comparisons"] == n - 1
    assert counts(session)["prompts"] == n - 1
