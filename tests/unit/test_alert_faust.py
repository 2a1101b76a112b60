"""The alerting processor's Faust consumer commits past transaction markers (the gaps in a
transactional topic's offsets) in one commit, as far as its records are acked."""

from __future__ import annotations

from faust.utils.functional import consecutive_numbers
from intervaltree import IntervalTree

from streams.alerts_faust import merge_gaps


def _committable(acked: list[int]) -> int:
    """What Faust commits: one past the first run of consecutive acked offsets."""
    return next(consecutive_numbers(acked))[-1] + 1


def _gaps(*spans: tuple[int, int]) -> IntervalTree:
    tree = IntervalTree()
    for begin, end in spans:
        tree.addi(begin, end)
    return tree


def test_three_transactions_commit_at_once():
    # Records 0-3, marker 4, records 5-8, marker 9, records 10-12; Faust notes each gap with the
    # record after it ([4, 6) and [9, 11)).
    acked = [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12]
    gaps = _gaps((4, 6), (9, 11))
    merge_gaps(acked, gaps)
    assert acked == list(range(13)) and _committable(acked) == 13
    assert not gaps


def test_without_the_merge_a_duplicate_stops_the_commit_at_the_first_transaction():
    acked = sorted([0, 1, 2, 3, 5, 6, 7, 8, 4, 5])  # what Faust's own merge leaves: 5 twice
    assert _committable(acked) == 6


def test_nothing_past_the_highest_acked_offset_is_committed():
    acked = [0, 1, 2, 3]
    gaps = _gaps((4, 6))  # the marker at 4 and record 5, not processed yet
    merge_gaps(acked, gaps)
    assert acked == [0, 1, 2, 3] and _committable(acked) == 4
    acked.append(5)
    merge_gaps(acked, gaps)
    assert acked == [0, 1, 2, 3, 4, 5] and _committable(acked) == 6


def test_overlapping_gaps_left_unmerged_fill_in_once():
    # A marker after every record: each gap [n, n+2) overlaps the next; they are not merged when added.
    acked = [0, 2, 4, 6]
    gaps = _gaps((1, 3), (3, 5), (5, 7))
    merge_gaps(acked, gaps)
    assert acked == list(range(7)) and _committable(acked) == 7 and not gaps
