"""Writer quality (app/services/quality/writers.py) on data with known figures, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.models import DemonstrationSource, ReviewStatus
from app.services import quality
from tests.utils.factories import make_project, make_user
from tests.utils.writing_data import demo_of, writer_history


def test_writer_figures_and_outliers(session: Session) -> None:
    project = make_project(session, "writers")
    good, steady, lazy, new, reviewer = (
        make_user(session, name) for name in ("gwen", "sam", "larry", "nina", "rex")
    )
    writer_history(session, project, good, reviewer, n=12, accepted=12, score=5, seconds=120, text="x" * 200,
                   improved=4, edit=30)  # fmt: skip
    writer_history(session, project, steady, reviewer, n=12, accepted=10, score=4, seconds=90, text="y" * 100)
    writer_history(session, project, lazy, reviewer, n=12, accepted=3, score=2, seconds=10, text="z" * 20,
                   improved=6, edit=0, lazy=8)  # fmt: skip
    writer_history(session, project, new, reviewer, n=4, accepted=0, score=1, seconds=5, text="w" * 10)
    demo_of(session, project, None, 0, text="imported answer")  # no author: not a writer
    pending = demo_of(session, project, good, 99, text="x" * 200, source=DemonstrationSource.written,
                      review_status=ReviewStatus.pending, time_spent_ms=120_000)  # fmt: skip
    assert pending.review_count == 0

    writers = {w.username: w for w in quality.writer_report(session, project)}
    assert list(writers) == ["gwen", "larry", "sam", "nina"]  # most demonstrations first
    g, s, lz, n = writers["gwen"], writers["sam"], writers["larry"], writers["nina"]
    assert (g.demonstrations, g.written, g.improved, g.accepted, g.rejected, g.pending) == (
        13,
        9,
        4,
        12,
        0,
        1,
    )
    assert g.acceptance_rate == 1.0 and g.mean_score == 5.0 and g.reviews == 12
    assert g.median_seconds == 120.0 and g.mean_chars == 200.0 and g.mean_edit_distance == 30.0
    assert (
        s.acceptance_rate == pytest.approx(10 / 12) and s.mean_score == 4.0 and s.mean_edit_distance is None
    )
    assert s.median_seconds == 90.0 and s.mean_chars == 100.0 and s.lazy_share == 0.0
    assert (
        lz.acceptance_rate == pytest.approx(3 / 12) and lz.mean_score == 2.0 and lz.mean_edit_distance == 0.0
    )
    assert lz.lazy_share == pytest.approx(8 / 12) and lz.median_seconds == 10.0

    # the lazy writer breaks all three rules against the others' pooled figures; the others none;
    # the newcomer, with too few demonstrations, none although all of theirs were rejected
    assert lz.others_acceptance_rate == pytest.approx(22 / 28)  # gwen 12/12, sam 10/12, nina 0/4
    assert lz.acceptance_outlier and lz.score_outlier and lz.lazy_outlier and len(lz.outliers) == 3
    assert "acceptance 25% of 12 reviewed" in lz.outliers[0]
    assert not g.outliers and not s.outliers and not n.outliers
    assert n.acceptance_rate == 0.0 and n.decided == 4


def test_no_writers(session: Session) -> None:
    assert quality.writer_report(session, make_project(session, "empty")) == []
