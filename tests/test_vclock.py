"""Vector clocks: the lattice laws and happened-before, as properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.core.vclock import EMPTY_CLOCK, Order, VectorClock

SETTINGS = settings(max_examples=150, deadline=None, database=None)
SERVERS = st.integers(0, 6)  # few IDs, so clocks often share entries and compare non-trivially
clocks = st.dictionaries(SERVERS, st.integers(0, 4), max_size=5).map(VectorClock)


@SETTINGS
@given(clocks, clocks)
def test_merge_is_commutative(a: VectorClock, b: VectorClock) -> None:
    assert a.merge(b) == b.merge(a)


@SETTINGS
@given(clocks, clocks, clocks)
def test_merge_is_associative(a: VectorClock, b: VectorClock, c: VectorClock) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@SETTINGS
@given(clocks)
def test_merge_is_idempotent_and_empty_is_neutral(a: VectorClock) -> None:
    assert a.merge(a) == a
    assert a.merge(EMPTY_CLOCK) == a == EMPTY_CLOCK.merge(a)


@SETTINGS
@given(clocks, clocks)
def test_merge_is_the_least_upper_bound(a: VectorClock, b: VectorClock) -> None:
    joined = a.merge(b)
    assert a <= joined and b <= joined
    for server in range(7):
        assert joined[server] == max(a[server], b[server])
    assert joined.total == sum(max(a[server], b[server]) for server in range(7))


@SETTINGS
@given(clocks, st.integers(0, 6))
def test_merging_a_clock_that_covers_us_builds_nothing(a: VectorClock, server: int) -> None:
    # A log taking its next entry: the entry's clock is the merge (no dict copied).
    later = a.increment(server)
    assert a.merge(later) is later
    assert later.merge(a) is later


@SETTINGS
@given(clocks, clocks)
def test_compare_is_consistent_with_le(a: VectorClock, b: VectorClock) -> None:
    order = a.compare(b)
    expected = {
        (True, True): Order.EQUAL,
        (True, False): Order.BEFORE,
        (False, True): Order.AFTER,
        (False, False): Order.CONCURRENT,
    }[(a <= b, b <= a)]
    assert order is expected
    mirrored = {Order.BEFORE: Order.AFTER, Order.AFTER: Order.BEFORE}.get(order, order)
    assert b.compare(a) is mirrored
    assert (a < b) == (order is Order.BEFORE)
    assert (a > b) == (order is Order.AFTER)
    assert (a == b) == (order is Order.EQUAL)
    assert a.concurrent(b) == (order is Order.CONCURRENT)
    if a == b:
        assert hash(a) == hash(b)


@SETTINGS
@given(clocks, SERVERS)
def test_increment_happens_after(a: VectorClock, server: int) -> None:
    later = a.increment(server)
    assert a.compare(later) is Order.BEFORE
    assert later.compare(a) is Order.AFTER
    assert later[server] == a[server] + 1
    assert later.total == a.total + 1


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), SERVERS), min_size=1, max_size=25))
def test_total_grows_strictly_along_happened_before(steps: list[tuple[int, int]]) -> None:
    # Three processes that tick and exchange clocks at random: every pair of recorded
    # events ordered by happened-before has strictly growing totals (a Lamport time).
    procs = [EMPTY_CLOCK, EMPTY_CLOCK, EMPTY_CLOCK]
    events: list[VectorClock] = []
    for proc, other in steps:
        source = procs[other % 3]
        procs[proc] = procs[proc].merge(source).increment(proc)
        events.append(procs[proc])
    for a in events:
        for b in events:
            if a < b:
                assert a.total < b.total
            if a.compare(b) is Order.EQUAL:
                assert a.total == b.total


@SETTINGS
@given(clocks)
def test_items_are_sorted_and_zeros_are_dropped(a: VectorClock) -> None:
    keys = [key for key, _ in a.items()]
    assert keys == sorted(keys)
    assert all(value > 0 for _, value in a.items())
    assert VectorClock({**a.as_dict(), 99: 0}) == a


def test_negative_entries_are_refused() -> None:
    with pytest.raises(ValueError):
        VectorClock({1: -1})


@SETTINGS
@given(clocks, clocks)
def test_meet_is_the_pointwise_minimum(a: VectorClock, b: VectorClock) -> None:
    servers = {k for k, _ in a.items()} | {k for k, _ in b.items()}
    assert a.meet(b) == VectorClock({k: min(a[k], b[k]) for k in servers})
    assert a.meet(b) <= a and a.meet(b) <= b
    if a <= b:  # the fast path hands back the clock itself, which is its own meet
        assert a.meet(b) is a


wide = st.dictionaries(st.integers(0, 2**54), st.integers(0, 2**54), max_size=4).map(VectorClock)


@SETTINGS
@given(wide, st.integers(0, 2**54))
def test_within_agrees_with_highest(a: VectorClock, bound: int) -> None:
    assert a.within(bound) == (a.highest() <= bound)
