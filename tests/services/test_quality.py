"""Label-quality reports read from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from app.models import Comparison, Judgment, JudgmentSource, Project, Role, Run, RunKind, User
from app.schemas.export import ComparisonExport
from app.services import exporting, quality
from app.services.quality import agreement
from tests.utils.factories import make_pair, make_project, make_user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def vote(
    session: Session,
    comparison: Comparison,
    rater: User,
    choice: str,
    strength: int | None = None,
    *,
    a_on_left: bool = True,
    both_bad: bool = False,
    flags: list[str] | None = None,
    rationale: str = "",
    time_spent_ms: int = 1000,
    at: datetime = T0,
    run: Run | None = None,
) -> Judgment:
    ai = rater.role == Role.judge
    judgment = Judgment(
        comparison_id=comparison.id,
        rater_id=rater.id,
        project_id=comparison.project_id,
        choice=choice,
        strength=(0 if choice == "tie" else 1) if strength is None else strength,
        both_bad=both_bad,
        flags=flags or [],
        rationale=rationale,
        time_spent_ms=time_spent_ms,
        a_on_left=a_on_left,
        source=JudgmentSource.ai if ai else JudgmentSource.human,
        run_id=run.id if run else None,
        provenance={"method": "reward_model", "model_version_id": None} if ai else None,
        created_at=at,
    )
    session.add(judgment)
    comparison.judgment_count += 1
    return judgment


def pairs(session: Session, project: Project, n: int, *, gold: list[str] | None = None) -> list[Comparison]:
    prefix = "gold" if gold else "pair"
    return [
        make_pair(
            session,
            project,
            f"{prefix} {i}",
            f"answer {i} a",
            f"answer {i} b",
            gold=gold[i] if gold else None,
        )
        for i in range(n)
    ]


def judge_user(session: Session, project: Project, name: str = "rm-judge") -> tuple[User, Run]:
    judge = make_user(session, name, Role.judge)
    run = Run(project_id=project.id, kind=RunKind.judge, config={"method": "reward_model"})
    session.add(run)
    session.flush()
    return judge, run


def test_planted_left_bias_is_flagged_and_an_honest_rater_is_not(session: Session) -> None:
    rng = random.Random(20260302)
    project = make_project(session, "bias", overlap=2)
    comparisons = pairs(session, project, 100)
    biased, honest = make_user(session, "lefty"), make_user(session, "fair")
    expected_left = {"lefty": 0, "fair": 0}
    non_tie = {"lefty": 0, "fair": 0}
    for i, comparison in enumerate(comparisons):
        truth = "A" if rng.random() < 0.5 else "B"
        # The biased rater picks whatever is on the left 85% of the time.
        a_on_left = rng.random() < 0.5
        picks_left = rng.random() < 0.85
        choice = "A" if picks_left == a_on_left else "B"
        vote(session, comparison, biased, choice, rng.choice([1, 2]), a_on_left=a_on_left,
             at=T0 + timedelta(minutes=i))  # fmt: skip
        expected_left["lefty"] += picks_left
        non_tie["lefty"] += 1
        # The honest rater follows the truth with some noise, wherever it is shown, with a few ties.
        a_on_left = rng.random() < 0.5
        if i % 10 == 0:
            vote(session, comparison, honest, "tie", a_on_left=a_on_left, at=T0 + timedelta(minutes=i))
            continue
        choice = truth if rng.random() < 0.9 else ("B" if truth == "A" else "A")
        vote(session, comparison, honest, choice, rng.choice([1, 2]), a_on_left=a_on_left,
             at=T0 + timedelta(minutes=i))  # fmt: skip
        expected_left["fair"] += (choice == "A") == a_on_left
        non_tie["fair"] += 1
    session.flush()

    raters = {r.username: r for r in quality.rater_report(session, project)}
    lefty, fair = raters["lefty"], raters["fair"]
    assert (lefty.left, lefty.non_tie) == (expected_left["lefty"], 100)
    assert (fair.left, fair.non_tie) == (expected_left["fair"], non_tie["fair"])
    assert fair.ties == 10 and fair.tie_rate == pytest.approx(0.1)
    assert lefty.left_p_value == pytest.approx(agreement.binomial_test(lefty.left, 100))
    assert lefty.left_share > 0.75 and lefty.left_p_value < 1e-6
    assert lefty.position_biased and any("position bias" in reason for reason in lefty.outliers)
    assert fair.left_p_value > 0.05
    assert not fair.position_biased and fair.outliers == []


def test_no_position_flag_on_too_few_votes(session: Session) -> None:
    project = make_project(session, "few")
    rater = make_user(session, "early")
    for comparison in pairs(session, project, quality.POSITION_MIN_VOTES - 1):
        vote(session, comparison, rater, "A", a_on_left=True)  # always left: p is tiny
    session.flush()
    (report,) = quality.rater_report(session, project)
    assert report.left_share == 1.0 and report.left_p_value < 1e-6
    assert not report.position_biased and report.outliers == []


def test_gold_accuracy_per_rater_and_project(session: Session) -> None:
    answers = ["A", "B", "tie", "A", "B", "A", "B", "A", "tie", "B", "A", "B"]
    project = make_project(session, "gold", gold_rate=0.2)
    gold = pairs(session, project, len(answers), gold=answers)
    regular = pairs(session, project, 3)
    good, perfect, poor = (
        make_user(session, "good"),
        make_user(session, "perfect"),
        make_user(session, "poor"),
    )
    flip = {"A": "B", "B": "A", "tie": "A"}
    for i, (comparison, answer) in enumerate(zip(gold, answers, strict=True)):
        vote(session, comparison, perfect, answer)
        vote(session, comparison, good, answer if i else flip[answer])  # 11 of 12
        vote(session, comparison, poor, answer if i < 4 else flip[answer])  # 4 of 12
    for comparison in regular:  # regular pairs never count towards gold accuracy
        for rater in (good, perfect, poor):
            vote(session, comparison, rater, "B")
    session.flush()

    report = quality.project_quality(session, project, with_length_bias=False)
    raters = {r.username: r for r in report.raters}
    assert (raters["perfect"].gold_correct, raters["perfect"].gold_judgments) == (12, 12)
    assert raters["good"].gold_accuracy == pytest.approx(11 / 12)
    assert raters["poor"].gold_accuracy == pytest.approx(4 / 12)
    assert report.gold_accuracy == pytest.approx(27 / 36) and report.gold.pairs == 36
    # Far below the others (4/12 vs 23/24): highlighted; 11/12 vs 16/24 is not.
    assert raters["poor"].gold_outlier and any("gold accuracy" in r for r in raters["poor"].outliers)
    assert not raters["good"].gold_outlier and not raters["perfect"].gold_outlier


def test_agreement_and_alpha_match_the_vote_table(session: Session) -> None:
    project = make_project(session, "agree", overlap=3)
    comparisons = pairs(session, project, 6)
    r1, r2, r3 = (make_user(session, name) for name in ("ann", "bob", "cyd"))
    judge, run = judge_user(session, project)
    # Signed strengths per comparison (None: not judged); the AI judge votes on every pair.
    table = {
        "ann": [2, 1, 0, -1, -2, 1],
        "bob": [1, 1, -1, -1, None, 2],
        "cyd": [2, -1, 0, None, -2, None],
    }
    users = {"ann": r1, "bob": r2, "cyd": r3}
    for name, values in table.items():
        for comparison, value in zip(comparisons, values, strict=True):
            if value is not None:
                choice = "A" if value > 0 else "B" if value < 0 else "tie"
                vote(session, comparison, users[name], choice, abs(value))
    for comparison in comparisons:
        vote(session, comparison, judge, "B", 1, run=run)
    session.flush()

    report = quality.project_quality(session, project, with_length_bias=False)
    units = [[table[name][i] for name in table] for i in range(6)]
    choices = [[None if v is None else agreement.nominal_of_signed(v) for v in unit] for unit in units]
    assert report.agreement.units == 6 and report.agreement.votes == 15
    assert report.agreement.alpha_ordinal == pytest.approx(agreement.krippendorff_alpha(units, "ordinal"))
    assert report.agreement.alpha_interval == pytest.approx(agreement.krippendorff_alpha(units, "interval"))
    assert report.agreement.alpha_nominal == pytest.approx(agreement.krippendorff_alpha(choices, "nominal"))
    # Pairs by hand: u0 3 pairs (3 agree), u1 3 (1), u2 3 (1), u3 1 (1), u4 1 (1), u5 1 (1).
    assert report.agreement.percent == pytest.approx(8 / 12)
    raters = {r.username: r for r in report.raters}
    # ann's votes paired with another's: u0 2/2, u1 1/2, u2 1/2, u3 1/1, u4 1/1, u5 1/1.
    assert (raters["ann"].agreement.agreeing, raters["ann"].agreement.pairs) == (7, 9)
    # bob: u0 2/2, u1 1/2, u2 0/2, u3 1/1, u5 1/1; cyd: u0 2/2, u1 0/2, u2 1/2, u4 1/1.
    assert (raters["bob"].agreement.agreeing, raters["bob"].agreement.pairs) == (5, 8)
    assert (raters["cyd"].agreement.agreeing, raters["cyd"].agreement.pairs) == (4, 7)
    assert report.human_judgments == 15 and report.ai_judgments == 6
    assert report.values == {-2: 2, -1: 4, 0: 2, 1: 4, 2: 3}


def test_low_agreement_rater_is_flagged(session: Session) -> None:
    project = make_project(session, "odd", overlap=3)
    comparisons = pairs(session, project, quality.AGREEMENT_MIN_PAIRS + 5)
    ann, bob, odd = make_user(session, "ann"), make_user(session, "bob"), make_user(session, "odd")
    for i, comparison in enumerate(comparisons):
        choice = "A" if i % 3 else "B"
        vote(session, comparison, ann, choice)
        vote(session, comparison, bob, choice)
        vote(session, comparison, odd, "B" if choice == "A" else "A")
    session.flush()
    raters = {r.username: r for r in quality.rater_report(session, project)}
    assert raters["odd"].agreement_rate == 0.0 and raters["odd"].others_agreement.rate == 1.0
    assert raters["odd"].agreement_outlier
    assert any("agreement" in reason for reason in raters["odd"].outliers)
    # ann agrees with bob only (50%), but the pairs without her (bob-odd) agree never: not flagged.
    assert raters["ann"].agreement_rate == pytest.approx(0.5)
    assert not raters["ann"].agreement_outlier and not raters["bob"].agreement_outlier


def test_ai_judge_is_reported_beside_humans_and_not_as_a_rater(session: Session) -> None:
    project = make_project(session, "rlaif", overlap=2)
    comparisons = pairs(session, project, 5)
    h1, h2 = make_user(session, "hana"), make_user(session, "ivo")
    judge, run = judge_user(session, project)
    humans = {"hana": ["A", "A", "B", "tie", "A"], "ivo": ["A", "B", "B", "B", None]}
    ai = ["A", "A", "A", "B", "B"]
    for name, user in (("hana", h1), ("ivo", h2)):
        for comparison, choice in zip(comparisons, humans[name], strict=True):
            if choice:
                vote(session, comparison, user, choice)
    for comparison, choice in zip(comparisons, ai, strict=True):
        vote(session, comparison, judge, choice, run=run)
    lone = make_pair(session, project, "only ai", "x", "y")
    vote(session, lone, judge, "A", run=run)  # no human on it: not shared
    session.flush()

    report = quality.project_quality(session, project, with_length_bias=False)
    assert [r.username for r in report.raters] == ["hana", "ivo"]
    assert report.human_judgments == 9 and report.ai_judgments == 6
    (row,) = report.judges
    assert (row.username, row.judgments, row.runs, row.shared_comparisons) == ("rm-judge", 6, 1, 5)
    # Judge vs each human: c0 A/A,A (2/2) c1 A/A,B (1/2) c2 A/B,B (0/2) c3 B/tie,B (1/2) c4 B/A (0/1).
    assert (row.with_humans.agreeing, row.with_humans.pairs) == (4, 9)
    # Humans on the judge's pairs with two human votes (c0..c3): agree on c0 and c2.
    assert (row.human_human.agreeing, row.human_human.pairs) == (2, 4)
    assert row.agreement == pytest.approx(4 / 9) and row.human_agreement == pytest.approx(0.5)
    # The judge's votes leave the human numbers alone.
    assert report.agreement.pairs == agreement.PairCounts(2, 4)


def test_throughput_median_time_and_flags(session: Session) -> None:
    project = make_project(session, "pace", flags=["unsafe", "off-topic"])
    rater = make_user(session, "pat")
    comparisons = pairs(session, project, 6)
    times = [T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=50),
             T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=5), T0 + timedelta(days=1)]  # fmt: skip
    flags = [["unsafe"], [], ["unsafe", "off-topic"], [], ["removed-flag"], []]
    for i, comparison in enumerate(comparisons):
        vote(session, comparison, rater, "A" if i % 2 else "tie", at=times[i], flags=flags[i],
             both_bad=i == 1, time_spent_ms=(i + 1) * 2000)  # fmt: skip
    session.flush()
    (report,) = quality.rater_report(session, project)
    assert report.active_hours == 3 and report.throughput == pytest.approx(2.0)
    assert report.median_seconds == pytest.approx(7.0)
    assert report.flagged == 3 and report.flag_rate == pytest.approx(0.5)
    assert report.flag_counts == {"unsafe": 2, "off-topic": 1, "removed-flag": 1}
    assert report.both_bad == 1 and report.ties == 3
    assert report.first_at == T0 and report.last_at == times[-1]


def test_empty_project_gives_no_numbers_and_no_errors(session: Session) -> None:
    project = make_project(session, "empty")
    pairs(session, project, 2)
    report = quality.project_quality(session, project, with_length_bias=False)
    assert report.empty and report.raters == [] and report.judges == []
    assert report.agreement.percent is None and report.agreement.alpha_ordinal is None
    assert report.gold_accuracy is None and report.left_share is None and report.tie_rate is None
    assert quality.disputes(session, project).total == 0


def test_split_pairs_resolution_and_pages(session: Session) -> None:
    project = make_project(session, "split", overlap=3, split_threshold=0.66)
    comparisons = pairs(session, project, 5)
    raters = [make_user(session, f"r{i}") for i in range(3)]
    admin = make_user(session, "boss", Role.admin)
    judge, run = judge_user(session, project)
    tallies = [("A", "A", "A"), ("A", "A", "B"), ("A", "B", "tie"), ("A", "B", None), ("B", None, None)]
    for comparison, tally in zip(comparisons, tallies, strict=True):
        for rater, choice in zip(raters, tally, strict=True):
            if choice:
                vote(session, comparison, rater, choice, rationale=f"because {choice}")
    vote(session, comparisons[0], judge, "B", run=run)  # AI votes never make a pair split
    gold = pairs(session, project, 1, gold=["A"])[0]
    vote(session, gold, raters[0], "A")
    vote(session, gold, raters[1], "B")
    session.flush()

    page = quality.disputes(session, project)
    # 2/3 = 0.667 >= 0.66 is a clear majority; 1/3 and 1/2 are split; one vote is not; gold is not.
    assert page.total == 2
    assert [d.comparison_id for d in page.disputes] == [comparisons[3].id, comparisons[2].id]
    first = page.disputes[1]
    assert first.tally == {"A": 1, "B": 1, "tie": 1}
    assert sorted(v.rationale for v in first.votes) == ["because A", "because B", "because tie"]
    assert first.text_a == "answer 2 a" and first.messages[0]["content"] == "pair 2"
    # Any disagreement: 2 against 1 is listed too, a unanimous pair still is not.
    contested = quality.disputes(session, project, scope="any")
    assert [d.comparison_id for d in contested.disputes] == [c.id for c in comparisons[1:4]][::-1]

    quality.resolve(session, project=project, comparison_id=comparisons[2].id, choice="B", note="B is right",
                    admin_id=admin.id)  # fmt: skip
    session.flush()
    assert quality.disputes(session, project).total == 1
    resolved = quality.disputes(session, project, status="resolved")
    (item,) = resolved.disputes
    assert (item.resolved_choice, item.resolved_by, item.resolution_note) == ("B", "boss", "B is right")
    assert item.resolved_at is not None
    assert quality.disputes(session, project, status="all").total == 2

    # Pages of one: newest first, and past the end nothing.
    assert [
        d.comparison_id for d in quality.disputes(session, project, status="all", per_page=1).disputes
    ] == [comparisons[3].id]
    assert quality.disputes(session, project, status="all", per_page=1, page=3).disputes == []

    quality.resolve(session, project=project, comparison_id=comparisons[2].id, choice=None, note="",
                    admin_id=admin.id)  # fmt: skip
    session.flush()
    comparison = session.get(Comparison, comparisons[2].id)
    assert comparison.resolved_choice is None and comparison.resolved_by_id is None
    assert comparison.resolved_at is None and comparison.resolution_note == ""
    with pytest.raises(quality.QualityError):
        quality.resolve(
            session, project=project, comparison_id=gold.id, choice="B", note="", admin_id=admin.id
        )
    with pytest.raises(quality.QualityError):
        quality.resolve(session, project=project, comparison_id=comparisons[1].id, choice="C", note="",
                        admin_id=admin.id)  # fmt: skip
    other = make_project(session, "other")
    assert quality.resolve(session, project=other, comparison_id=comparisons[1].id, choice="A", note="",
                           admin_id=admin.id) is None  # fmt: skip


def test_dataset_card_has_a_label_quality_section(session: Session) -> None:
    project = make_project(session, "card", overlap=2)
    # Completion A is always the longer one.
    comparisons = [
        make_pair(session, project, f"p{i}", "a long answer " * (i + 2), "short") for i in range(4)
    ]
    ann, bob = make_user(session, "ann"), make_user(session, "bob")
    judge, run = judge_user(session, project)
    for comparison, (a, b) in zip(comparisons, [("A", "A"), ("B", "B"), ("A", "B"), ("B", "B")], strict=True):
        vote(session, comparison, ann, a, a_on_left=True)
        vote(session, comparison, bob, b, a_on_left=False)
        vote(session, comparison, judge, "A", run=run)
    session.flush()
    export = exporting.prepare_comparisons(session, project=project, spec=ComparisonExport(), secret_key="k")
    _, card = exporting.preview(export)
    section = card[card.index("## Label quality") :]
    assert "| human raters | 2 |" in section
    assert "| pairwise agreement (A / B / tie) | 75.0% (4 vote pairs) |" in section
    q = quality.project_quality(session, project, with_length_bias=False)
    assert (
        f"| Krippendorff's alpha, ordinal (signed strength -2..2) | {q.agreement.alpha_ordinal:.3f} |"
        in section
    )
    assert "| gold accuracy | n/a |" in section
    # ann picked left on A votes (2 of 4), bob on B votes (3 of 4): 5 of 8.
    assert "| left response chosen (non-tie votes) | 62.5% (8 votes) |" in section
    assert "| tie rate | 0.0% |" in section
    # The judge (A everywhere) agrees with 3 of 8 human votes; humans agree on 3 of 4 pairs.
    assert "| rm-judge | 4 | 37.5% (8 pairs) | 75.0% (4 pairs) |" in section
    # Humans chose the longer completion (A) in 3 of their 8 votes.
    assert "| the longer completion wins | 37.5% (8 judgments) |" in section
