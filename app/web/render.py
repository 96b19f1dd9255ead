"""Untrusted text (model output, imported prompts, instructions) as safe HTML.

markdown-it renders with raw HTML disabled, so `<script>` in the source stays text; its link
validator drops javascript:, vbscript: and data: URLs. nh3 (the Rust `ammonia` sanitiser) then
allows only the tags markdown produces, as a second, independent line of defence. Images are
dropped: a remote image in model output would be a tracking pixel in the rater's browser. No
``style`` attribute is kept (markdown's table alignment included): the Content-Security-Policy
forbids inline styles, so a browser would only refuse them.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "ol": {"start"},
}


@lru_cache(maxsize=4096)
def _render(text: str) -> str:
    html = _md.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )


def render_markdown(text: str | None) -> Markup:
    """Sanitised HTML for a markdown string; safe to insert into a page as it is."""
    return Markup(_render(text or ""))
