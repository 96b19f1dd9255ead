"""Untrusted text (model output, imported prompts, instructions) as safe HTML.

markdown-it renders with raw HTML disabled, so `<script>` in the source stays text; its link
validator drops javascript:, vbscript: and data: URLs. nh3 (the Rust `ammonia` sanitiser) then
allows only the tags markdown produces, as a second, independent line of defence. Images are
dropped: a remote image in model output would be a tracking pixel in the rater's browser. No
``style`` attribute is kept (markdown's table alignment included): the Content-Security-Policy
forbids inline styles, so a browser would only refuse them.

Prompts and completions never change once stored, and the workbench shows each to several raters
(and again on a reload), so each process keeps the HTML of the texts it rendered last, keyed by
the text itself (so what it returns is exactly what rendering would): a least-recently-used cache
bounded by the characters it holds (`CACHE_CHARS`), not by a count of texts, since one text may be
100,000 characters. A text whose source and HTML pass a sixteenth of the bound is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

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


def _sanitised(text: str) -> str:
    html = _md.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )


# Characters (source and HTML together) the cache holds per process: a few thousand typical texts,
# some tens of MB at most.
CACHE_CHARS = 16_000_000
_cache: OrderedDict[str, str] = OrderedDict()  # text -> HTML, least recently used first
_cache_lock = threading.Lock()  # the web app renders in several threads
_cached_chars = 0


def _render(text: str) -> str:
    global _cached_chars
    with _cache_lock:
        html = _cache.get(text)
        if html is not None:
            _cache.move_to_end(text)
            return html
    html = _sanitised(text)
    size = len(text) + len(html)
    if size > CACHE_CHARS // 16:
        return html
    with _cache_lock:
        if text not in _cache:
            _cache[text] = html
            _cached_chars += size
            while _cached_chars > CACHE_CHARS:
                old_text, old_html = _cache.popitem(last=False)
                _cached_chars -= len(old_text) + len(old_html)
    return html


def render_markdown(text: str | None) -> Markup:
    """Sanitised HTML for a markdown string; safe to insert into a page as it is."""
    return Markup(_render(text or ""))
