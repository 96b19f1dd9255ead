"""The Markdown cache (app/web/render.py) returns exactly what rendering returns, and stays within
its bound of characters however long the texts."""

from __future__ import annotations

import pytest

from app.web import render


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "CACHE_CHARS", 4_000)
    monkeypatch.setattr(render, "_cache", type(render._cache)())
    monkeypatch.setattr(render, "_cached_chars", 0)


def test_cached_html_is_what_rendering_gives(small_cache: None) -> None:
    texts = [
        "**bold** and <script>alert(1)</script>",
        "[x](javascript:alert(1)) ![img](http://example.com/p.png)",
        "| a | b |\n|:--|--:|\n| 1 | 2 |",
        "```python\nprint('<b>')\n```",
    ]
    for text in texts * 3:  # the second and third rounds come from the cache
        assert str(render.render_markdown(text)) == render._sanitised(text)
    assert set(render._cache) == set(texts)


def test_the_cache_holds_at_most_its_bound(small_cache: None) -> None:
    for i in range(200):
        render.render_markdown(f"text {i} " + "word " * 20)
    held = sum(len(text) + len(html) for text, html in render._cache.items())
    assert held == render._cached_chars <= render.CACHE_CHARS
    assert "text 199" in next(reversed(render._cache))  # the newest stays, the oldest went
    assert not any(text.startswith("text 0 ") for text in render._cache)
    long = "x" * render.CACHE_CHARS
    assert str(render.render_markdown(long)) == render._sanitised(long)
    assert long not in render._cache  # too long to keep
