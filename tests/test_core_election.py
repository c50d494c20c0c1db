"""LcrElection on its own: LCR's forwarding rules, terms, hops and the ring order."""

from __future__ import annotations

from tchat.core.election import LcrElection, Verdict, next_on_ring

TIMEOUT = 1.0
HOP = 0.1


def test_a_larger_candidate_is_forwarded_unchanged() -> None:
    lcr = LcrElection(5)
    assert lcr.receive(1, 9, 0.0, TIMEOUT) == (Verdict.FORWARD, 9)
    assert lcr.participant


def test_a_smaller_candidate_is_replaced_by_our_id_while_not_participant() -> None:
    lcr = LcrElection(5)
    assert lcr.receive(1, 3, 0.0, TIMEOUT) == (Verdict.FORWARD, 5)
    assert lcr.participant


def test_a_smaller_candidate_is_dropped_once_participant() -> None:
    lcr = LcrElection(5)
    assert lcr.begin(1, 0.0, TIMEOUT) == 5
    assert lcr.receive(1, 3, 0.1, TIMEOUT) == (Verdict.DROP, 3)
    # ...while a larger one still goes on
    assert lcr.receive(1, 8, 0.2, TIMEOUT) == (Verdict.FORWARD, 8)


def test_our_own_id_coming_back_wins() -> None:
    lcr = LcrElection(5)
    lcr.begin(1, 0.0, TIMEOUT)
    assert lcr.receive(1, 5, 0.3, TIMEOUT) == (Verdict.ELECTED, 5)


def test_each_candidate_is_forwarded_once_per_term() -> None:
    """A token whose candidate crashed dies after one lap instead of circling for ever."""
    lcr = LcrElection(5)
    assert lcr.receive(1, 9, 0.0, TIMEOUT) == (Verdict.FORWARD, 9)
    assert lcr.receive(1, 9, 0.5, TIMEOUT) == (Verdict.DROP, 9)


def test_a_newer_term_opens_a_new_round_and_an_older_one_is_dropped() -> None:
    lcr = LcrElection(5)
    lcr.begin(1, 0.0, TIMEOUT)
    assert lcr.receive(1, 9, 0.1, TIMEOUT) == (Verdict.FORWARD, 9)
    # Term 2: participant and forwarded set start over, so 9 may pass again and a smaller
    # candidate is replaced by ours, as for a server that never took part.
    assert lcr.receive(2, 3, 0.2, TIMEOUT) == (Verdict.FORWARD, 5)
    assert lcr.term == 2
    assert lcr.receive(2, 9, 0.3, TIMEOUT) == (Verdict.FORWARD, 9)
    assert lcr.receive(1, 9, 0.4, TIMEOUT) == (Verdict.DROP, 9)  # stale round


def test_observe_only_moves_forward() -> None:
    lcr = LcrElection(5)
    assert lcr.observe(3)
    assert not lcr.observe(3)
    assert not lcr.observe(2)
    assert lcr.term == 3


def test_a_finished_round_elects_nobody_again() -> None:
    lcr = LcrElection(5)
    lcr.begin(1, 0.0, TIMEOUT)
    lcr.finish()
    assert not lcr.participant and lcr.deadline is None
    assert lcr.receive(1, 5, 0.5, TIMEOUT) == (Verdict.DROP, 5)  # a late lap of our token
    assert lcr.receive(1, 9, 0.5, TIMEOUT) == (Verdict.DROP, 9)
    assert not lcr.relay(1, 9)
    assert lcr.receive(2, 9, 0.6, TIMEOUT) == (Verdict.FORWARD, 9)  # the next round runs


def test_relay_passes_each_candidate_once() -> None:
    lcr = LcrElection(5)
    assert lcr.relay(1, 2)  # unchanged, even though smaller than us
    assert not lcr.relay(1, 2)
    assert lcr.relay(1, 7)


def test_the_round_deadline_is_set_by_the_first_token_of_a_round() -> None:
    lcr = LcrElection(5)
    lcr.receive(1, 9, 2.0, TIMEOUT)
    assert lcr.deadline == 2.0 + TIMEOUT and lcr.started_at == 2.0
    lcr.receive(1, 8, 2.5, TIMEOUT)
    assert lcr.deadline == 2.0 + TIMEOUT  # not pushed back by later tokens
    assert lcr.next_deadline() == 2.0 + TIMEOUT


def test_a_hop_is_acknowledged_or_skips_its_silent_neighbour() -> None:
    ring = [2, 5, 7, 9]
    lcr = LcrElection(5)
    lcr.begin(1, 0.0, TIMEOUT)
    assert lcr.send(5, ring, 0.0, HOP, set()) == 7
    assert lcr.next_deadline() == HOP  # the hop's deadline comes before the round's
    assert lcr.hop_expired(HOP / 2) is None
    lcr.acked(1, 4, 7)  # an ack for another candidate does not settle it
    assert lcr.hop is not None
    expired = lcr.hop_expired(HOP)
    assert expired is not None and expired.skipped == {7}
    assert lcr.send(5, ring, HOP, HOP, expired.skipped) == 9
    lcr.acked(1, 5, 9)
    assert lcr.hop is None and lcr.next_deadline() == TIMEOUT


def test_next_on_ring_goes_clockwise_wraps_and_skips() -> None:
    ring = [2, 5, 7, 9]
    assert next_on_ring(ring, 5, set()) == 7
    assert next_on_ring(ring, 9, set()) == 2  # wraps to the smallest
    assert next_on_ring(ring, 5, {7, 9}) == 2
    assert next_on_ring(ring, 5, {2, 7, 9}) is None  # alone
    assert next_on_ring([1, 2, 3], 4, set()) == 1  # not on the ring itself: still clockwise


def test_a_full_ring_elects_the_largest_id_only() -> None:
    """Every server starts the round at once; tokens travel one hop at a time."""
    ring = [3, 11, 4, 8, 6]
    nodes = {sid: LcrElection(sid) for sid in ring}
    tokens = [(sid, nodes[sid].begin(1, 0.0, TIMEOUT)) for sid in sorted(ring)]
    elected: list[int] = []
    for _ in range(len(ring) * len(ring)):  # bounded: LCR takes O(n^2) messages at most
        if not tokens:
            break
        sender, candidate = tokens.pop(0)
        target = next_on_ring(sorted(ring), sender, set())
        assert target is not None
        verdict, carried = nodes[target].receive(1, candidate, 0.1, TIMEOUT)
        if verdict is Verdict.ELECTED:
            elected.append(target)
        elif verdict is Verdict.FORWARD:
            tokens.append((target, carried))
    assert elected == [11]
    assert not tokens
