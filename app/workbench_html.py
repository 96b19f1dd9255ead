"""The rating workbench's HTML fragment read back as plain data (the CSRF token, the conversation,
the two responses, what the form asks; on a writing task the editor's text and the completion
being improved, on a review the reviewed response, its original and the lazy-writer warning), as
the simulated raters of app/simulate.py see it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_BLOCK = frozenset(
    {"p", "div", "li", "ul", "ol", "br", "hr", "pre", "blockquote", "tr", "table",
     "h1", "h2", "h3", "h4", "h5", "h6"}
)  # fmt: skip


@dataclass
class Workbench:
    """What a rater sees on the workbench fragment, as plain text."""

    csrf_token: str | None = None
    assignment_id: int | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (role, text)
    left: str | None = None
    right: str | None = None
    picks: list[int] = field(default_factory=list)
    rationale_required: bool = False
    empty: bool = False
    waiting: bool = False  # nothing to claim now, but pairs other raters hold may come back
    has_workbench: bool = False
    notice: str | None = None
    error: str | None = None
    task: str = "compare"  # compare, rank, write, improve or review (the form on the page)
    task_id: int | None = None  # a writing task's id
    answer: str | None = None  # the editor's text as sent (a draft, or the completion to improve)
    original: str | None = None  # improve: the model's completion; review: what it was edited from
    demonstration_id: int | None = None  # review: the demonstration under review
    reviewed: str | None = None  # review: the response under review
    lazy_flagged: bool = False  # review: the automatic checks flagged the answer
    responses: list[tuple[str, str]] = field(default_factory=list)  # rank: (letter, text) as shown
    remaining: str | None = None  # the progress line's "Left for you"

    @property
    def prompt(self) -> str:
        """The last user message (the one the completions answer)."""
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return self.messages[-1][1] if self.messages else ""


# Inside <pre>, spaces and line breaks stand in as these until the rest is laid out.
_PRE_SPACE, _PRE_BREAK = "\x00", "\x01"


def _clean_text(parts: list[str]) -> str:
    lines = ("".join(parts)).split("\n")
    kept = "\n".join(s for line in lines if (s := re.sub(r"\s+", " ", line).strip()))
    kept = kept.replace(_PRE_SPACE, " ").replace(_PRE_BREAK, "\n")
    return "\n".join(line.rstrip() for line in kept.split("\n")).strip("\n")


def _preformatted(data: str) -> str:
    return (
        data.replace("\r\n", "\n")
        .replace(" ", _PRE_SPACE)
        .replace("\t", _PRE_SPACE * 4)
        .replace("\n", _PRE_BREAK)
    )


class _WorkbenchParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities come out unescaped
        self.page = Workbench()
        self._captures: list[list] = []  # [key, depth, parts]
        self._pending_role: str | None = None
        self._lists: list[list[int] | None] = []  # per open list: [next number] for <ol>, None for <ul>
        self._pre = 0  # depth of <pre>
        self._textarea = False  # inside a <textarea>: its text is raw, line breaks and all
        self._in_original = False  # inside <details class="original"> until its text is read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        if tag not in _VOID:
            for capture in self._captures:
                capture[1] += 1
        if tag in _BLOCK:
            self._text("\n")
        if tag == "ol":
            start = a.get("start", "1")
            self._lists.append([int(start) if start.isdigit() else 1])
        elif tag == "ul":
            self._lists.append(None)
        elif tag == "li" and self._lists and self._lists[-1] is not None:
            counter = self._lists[-1]
            self._text(f"{counter[0]}. ")
            counter[0] += 1
        elif tag in ("td", "th"):
            self._text(" ")
        elif tag == "pre":
            self._pre += 1
        testid = a.get("data-testid")
        if tag == "section" and a.get("id") == "workbench":
            self.page.has_workbench = True
            if "ranking-bench" in classes:
                self.page.task = "rank"
        if tag == "form" and a.get("id") == "write-form":
            self.page.task = "improve" if self.page.original is not None else "write"
            self.page.task_id = int(a["data-task"]) if a.get("data-task", "").isdigit() else None
        elif tag == "form" and a.get("id") == "review-form":
            self.page.task = "review"
        elif tag == "form" and a.get("id") == "rank-form":
            self.page.task = "rank"
        elif testid == "lazy-flags":
            self.page.lazy_flagged = True
        if testid == "empty":
            self.page.empty = True
        elif testid == "waiting":
            self.page.waiting = True
        if tag == "input":
            name, value = a.get("name"), a.get("value", "")
            if name == "csrf_token" and self.page.csrf_token is None:
                self.page.csrf_token = value
            elif name == "assignment_id" and self.page.assignment_id is None and value.isdigit():
                self.page.assignment_id = int(value)
            elif name == "demonstration_id" and value.isdigit():
                self.page.demonstration_id = int(value)
            elif name == "pick" and re.fullmatch(r"-?\d+", value):
                self.page.picks.append(int(value))
            return
        if tag == "textarea" and a.get("name") == "rationale":
            self.page.rationale_required = "required" in a
        if tag == "textarea" and a.get("name") == "text":
            self._captures.append(["answer", 1, []])
            self._textarea = True
            return
        if tag == "details" and "original" in classes:
            self._in_original = True
        if tag == "div" and "message" in classes:
            roles = [c.removeprefix("role-") for c in classes if c.startswith("role-")]
            self._pending_role = roles[0] if roles else "user"
        key: object = None
        if testid in ("left-text", "right-text", "original-text", "reviewed-text", "remaining"):
            key = testid
        elif testid is not None and testid.startswith("text-") and "card-text" in classes:
            key = ("response", testid.removeprefix("text-"))
        elif tag == "div" and "markdown" in classes and self._in_original:
            key = "original-text"
        elif tag == "div" and "markdown" in classes and self._pending_role is not None:
            key, self._pending_role = ("message", self._pending_role), None
        elif tag == "p" and ("notice" in classes or "error" in classes):
            key = "notice" if "notice" in classes else "error"
        if key == "original-text":
            self._in_original = False
        if key is not None and tag not in _VOID:
            self._captures.append([key, 1, []])

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if tag == "textarea":
            self._textarea = False
        if tag in ("ol", "ul") and self._lists:
            self._lists.pop()
        elif tag == "pre" and self._pre:
            self._pre -= 1
            for capture in self._captures:  # the code's closing line break draws no empty line
                while capture[2] and capture[2][-1].endswith(_PRE_BREAK):
                    capture[2][-1] = capture[2][-1][: -len(_PRE_BREAK)]
        if tag in _BLOCK:
            self._text("\n")
        finished = []
        for capture in self._captures:
            capture[1] -= 1
            if capture[1] == 0:
                finished.append(capture)
        for capture in finished:
            self._captures.remove(capture)
            raw = "".join(capture[2])
            self._store(capture[0], raw if capture[0] == "answer" else _clean_text(capture[2]))

    def handle_data(self, data: str) -> None:
        # Outside <pre> a line break in the source is white space, as the browser lays it out; a
        # textarea's text is what the editor holds, as it is.
        if self._textarea:
            self._text(data)
        else:
            self._text(_preformatted(data) if self._pre else data.replace("\n", " "))

    def _text(self, data: str) -> None:
        for capture in self._captures:
            capture[2].append(data)

    def _store(self, key: object, text: str) -> None:
        if key == "answer":
            self.page.answer = text
        elif key == "original-text":
            self.page.original = text
        elif key == "reviewed-text":
            self.page.reviewed = text
        elif key == "left-text":
            self.page.left = text
        elif key == "right-text":
            self.page.right = text
        elif key == "remaining":
            self.page.remaining = text
        elif key == "notice":
            self.page.notice = text
        elif key == "error":
            self.page.error = text
        elif isinstance(key, tuple) and key[0] == "response":
            self.page.responses.append((key[1], text))
        elif isinstance(key, tuple):
            self.page.messages.append((key[1], text))


def parse_workbench(html: str) -> Workbench:
    """Read a rating page (or its htmx fragment): the pair as text, the form's fields."""
    parser = _WorkbenchParser()
    parser.feed(html)
    parser.close()
    page = parser.page
    if (
        page.task == "rank"
        and page.assignment_id is None
        and not (page.responses or page.empty or page.waiting)
    ):
        # A ranking bench without a ranking that names no state: none left for this rater
        # ("Left for you: 0"), or the ones left are held by other raters for now.
        page.empty, page.waiting = page.remaining == "0", page.remaining != "0"
    return page
