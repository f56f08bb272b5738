"""The console's timeline folded from a step log: a bar per attempt, waits apart, estimates."""

from __future__ import annotations

import pytest

from flowkit import RetryPolicy
from flowkit.store import StoredStep
from flowkit.ui.views import timeline_spans


def _row(
    step: str,
    status: str,
    attempt: int,
    start: float,
    end: float,
    error: str | None = None,
    due_at: float | None = None,
) -> StoredStep:
    return StoredStep(
        step, "invoke", status, attempt, error=error, started_at=start, ended_at=end, due_at=due_at
    )


def test_a_row_of_three_attempts_is_three_bars_spaced_by_the_policy_waits() -> None:
    """A row of attempt 3 over 100..110 s under waits of 1 s then 2 s is three estimated bars
    of 7/3 s, the waits between them, the last one ending at the row's end with its state."""
    policy = RetryPolicy(max_retries=2, interval=1.0, backoff=2.0)
    rows = [_row("pack", "done", 3, 100.0, 110.0)]
    spans = timeline_spans(rows, 200.0, {"pack": policy})
    assert [(s.attempt, s.state, s.approximate) for s in spans] == [
        (1, "failed", True),
        (2, "failed", True),
        (3, "done", True),
    ]
    each = 7.0 / 3
    assert [s.start for s in spans] == pytest.approx([100.0, 100 + each + 1, 100 + 2 * each + 3])
    assert [s.end - s.start for s in spans] == pytest.approx([each] * 3)
    assert spans[-1].end == pytest.approx(110.0)


def test_without_the_policy_the_attempts_share_the_span_equally() -> None:
    """When the workflow is not known here, the attempts split the row's span in equal parts
    and only the last one carries the stored error."""
    rows = [_row("pack", "failed", 2, 10.0, 14.0, error='"torn"')]
    spans = timeline_spans(rows, 20.0)
    assert [(s.start, s.end) for s in spans] == [(10.0, 12.0), (12.0, 14.0)]
    assert [s.error for s in spans] == [None, '"torn"']
    assert [s.state for s in spans] == ["failed", "failed"]


def test_a_single_attempt_is_exact_and_a_wait_is_drawn_apart_with_its_deadline() -> None:
    """One attempt is one exact bar; a waiting row's wait is its own bar to `open_end`, with
    the stored deadline; a signalled end closes the wait where the step finished."""
    parked = _row("approve", "waiting", 1, 1.0, 2.0, due_at=902.0)
    still = timeline_spans([parked], 5.0)
    assert [(s.kind, s.state, s.start, s.end, s.approximate) for s in still] == [
        ("invoke", "done", 1.0, 2.0, False),
        ("waiting", "waiting", 2.0, 5.0, False),
    ]
    assert still[1].due == 902.0
    signalled = timeline_spans([parked, _row("approve", "done", 1, 1.0, 4.0)], 9.0)
    assert [(s.kind, s.state, s.end) for s in signalled] == [
        ("invoke", "done", 2.0),
        ("waiting", "done", 4.0),
    ]


def test_attempts_another_row_drew_are_not_drawn_again() -> None:
    """After a row of attempt 1 (a crash, then a recovery), a row of attempt 3 draws attempts
    2 and 3 only, from the end of the first."""
    rows = [_row("pack", "failed", 1, 0.0, 1.0), _row("pack", "done", 3, 0.0, 5.0)]
    spans = timeline_spans(rows, 9.0)
    assert [(s.attempt, s.approximate) for s in spans] == [(1, False), (2, True), (3, True)]
    assert spans[1].start == pytest.approx(1.0)
    assert spans[2].end == pytest.approx(5.0)
