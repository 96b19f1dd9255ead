"""Simulated writers and reviewers: the edit rules, the best-of-N answer, the review rule, and
the writing workbench's pages read back as data."""

from __future__ import annotations

import pytest

from app import oracles
from app.oracles import OracleError, load_edit_rule
from app.simulate_writing import Writer
from app.workbench_html import parse_workbench


def test_edit_rules() -> None:
    assert oracles.add_target_word("q", " the cat ") == "the cat banana"
    assert oracles.add_target_word("q", "a Banana!") == "a Banana!"  # says it already
    assert oracles.add_target_word("q", "") == "banana"
    assert oracles.keep("q", "as it was ") == "as it was "
    assert load_edit_rule("keep") is oracles.keep
    assert load_edit_rule("app.oracles:add_target_word") is oracles.add_target_word
    with pytest.raises(OracleError, match="edit rule 'nonsense' is not of the form"):
        load_edit_rule("nonsense")
    with pytest.raises(OracleError, match="edit rule 'app.oracles:nothing'"):
        load_edit_rule("app.oracles:nothing")


WRITE_PAGE = """<section id="workbench"><div class="conversation">
  <div class="message role-user"><div class="role">user</div>
    <div class="markdown"><p>tell me about the cat</p></div></div>
</div>
<form id="write-form" data-task="7"><input type="hidden" name="csrf_token" value="tok">
<input type="hidden" name="assignment_id" value="3">
<textarea name="text" rows="14">line one &lt;b&gt;
  * indented</textarea></form></section>"""

IMPROVE_PAGE = """<section id="workbench"><div class="conversation">
  <div class="message role-user"><div class="role">user</div>
    <div class="markdown"><p>tell me about the dog</p></div></div>
</div>
<details class="original"><summary>The model's response</summary>
  <div class="markdown" data-testid="original-text"><p>no bad dog</p></div></details>
<form id="write-form" data-task="9"><input type="hidden" name="assignment_id" value="4">
<textarea name="text">no bad dog</textarea></form></section>"""

REVIEW_PAGE = """<section id="workbench">
<p class="warning" data-testid="lazy-flags">Automatic checks: <span class="badge">left unchanged</span></p>
<div class="conversation"><div class="message role-user"><div class="role">user</div>
  <div class="markdown"><p>tell me about the sun</p></div></div></div>
<article class="response">
  <div class="markdown" data-testid="reviewed-text"><p>the <strong>sun</strong> banana</p></div></article>
<details class="original"><summary>What it was edited from</summary>
  <div class="markdown"><p>the sun</p></div><pre class="diff">-the sun</pre></details>
<form id="review-form"><input type="hidden" name="demonstration_id" value="12"></form></section>"""


def test_writing_pages_read_back() -> None:
    write = parse_workbench(WRITE_PAGE)
    assert (write.task, write.task_id, write.assignment_id) == ("write", 7, 3)
    assert write.answer == "line one <b>\n  * indented"  # the editor's raw text, unescaped
    assert write.prompt == "tell me about the cat" and write.original is None
    improve = parse_workbench(IMPROVE_PAGE)
    assert (improve.task, improve.answer, improve.original) == ("improve", "no bad dog", "no bad dog")
    review = parse_workbench(REVIEW_PAGE)
    assert (review.task, review.demonstration_id, review.lazy_flagged) == ("review", 12, True)
    assert review.reviewed == "the sun banana" and review.original == "the sun"
    assert review.prompt == "tell me about the sun"


def test_the_writer_edits_the_best_sample_and_reviews_by_the_oracle() -> None:
    samples = {7: ["a cat", "the cat is very big", "cats"]}
    writer = Writer(oracles.prefers_longer, oracles.add_target_word, samples)
    write = parse_workbench(WRITE_PAGE)
    assert writer.answer(write) == "the cat is very big banana"  # the longest of three, edited
    assert writer.answer(parse_workbench(IMPROVE_PAGE)) == "no bad dog banana"
    no_samples = Writer(oracles.prefers_word, oracles.add_target_word, {})
    assert no_samples.answer(write) == "banana"

    by_word = Writer(oracles.prefers_word, oracles.add_target_word, {})
    review = parse_workbench(REVIEW_PAGE)
    assert not by_word.accepts(review)  # flagged lazy
    review.lazy_flagged = False
    assert by_word.accepts(review)  # says banana, its original did not
    review.original = "banana sun"
    assert not by_word.accepts(review)  # no better than what it was edited from
    review.original, review.reviewed = None, "the sun"
    assert not by_word.accepts(review)  # scores 0, not above accept_above
