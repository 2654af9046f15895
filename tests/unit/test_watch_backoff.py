"""The watch loop's backoff between failed applies."""

from __future__ import annotations

from reconciler.watch import Backoff


def test_the_delay_doubles_per_failure_up_to_the_cap_and_resets_on_success():
    b = Backoff(2.0, 10.0)
    assert b.delay() == 2.0
    assert [b.failed() for _ in range(4)] == [2.0, 4.0, 8.0, 10.0]
    assert b.succeeded() == 4
    assert b.delay() == 2.0


def test_a_watch_failing_for_days_keeps_the_capped_delay():
    # 2 ** 1024 overflows a float: an unbounded exponent ended the watch after ~1024 failures in a row
    b = Backoff(1.0, 300.0)
    for _ in range(5000):
        delay = b.failed()
    assert delay == 300.0
    assert b.failures == 5000
