"""Quorum helpers: majority arithmetic and projections."""

from __future__ import annotations

import pytest

import hapy


@pytest.mark.parametrize("n", range(0, 12))
def test_quorum_is_the_smallest_majority(n: int) -> None:
    q = hapy.quorum(n)
    if n == 0:
        assert q == 0
    else:
        assert 2 * q > n and 2 * (q - 1) <= n
    assert hapy.tolerance(n) == n - q
    assert hapy.Membership(n).quorum == q
    assert hapy.Membership(n).tolerance == hapy.tolerance(n)


def test_quorum_rejects_negative() -> None:
    with pytest.raises(OverflowError):
        hapy.quorum(-1)


def test_take_down_one_of_three() -> None:
    m = hapy.Membership(3)
    assert (m.voters, m.healthy, m.unknown, m.learners, m.unhealthy) == (3, 3, 0, 0, 0)
    p = m.take_down()
    assert (p.voters, p.quorum, p.healthy_min, p.healthy_max) == (3, 2, 2, 2)
    assert p.safety == "safe"
    assert m.take_down(2).safety == "unsafe"


def test_a_down_voter_makes_the_next_one_unsafe() -> None:
    m = hapy.Membership(3, healthy=2)
    assert m.unhealthy == 1
    assert m.take_down(1).safety == "unsafe"


def test_unknown_health_is_neither_safe_nor_unsafe() -> None:
    m = hapy.Membership(3, healthy=2, unknown=1)
    assert m.take_down(1).safety == "unknown"
    assert hapy.Membership(3, unknown=1).healthy == 2


def test_remove_and_add() -> None:
    assert hapy.Membership(2).remove(healthy=1).safety == "safe"
    assert hapy.Membership(1).remove(healthy=1).safety == "unsafe"
    two_of_three = hapy.Membership(3, healthy=2)
    assert two_of_three.remove(down=1).voters == 2
    assert two_of_three.remove(down=1).safety == "safe"
    assert hapy.Membership(1).add_unstarted_voter().safety == "unsafe"
    assert hapy.Membership(2).add_unstarted_voter().safety == "safe"
    grown = hapy.Membership(1).add_healthy_voter()
    assert (grown.voters, grown.quorum, grown.safety) == (2, 2, "safe")


def test_dicts_and_equality() -> None:
    m = hapy.Membership(5, healthy=4, unknown=1, learners=1)
    assert m.to_dict() == {"voters": 5, "healthy": 4, "unknown": 1, "learners": 1}
    assert m == hapy.Membership(5, 4, 1, 1)
    assert eval(repr(m), {"Membership": hapy.Membership}) == m
    p = m.take_down(1)
    assert p.to_dict() == {
        "voters": p.voters,
        "quorum": p.quorum,
        "healthy_min": p.healthy_min,
        "healthy_max": p.healthy_max,
        "safety": p.safety,
    }
    assert p == m.take_down(1) and p != m.take_down(2)
    assert p.safety in repr(p)


def test_invalid_memberships() -> None:
    with pytest.raises(ValueError, match="exceeds voters"):
        hapy.Membership(3, healthy=3, unknown=1)
    with pytest.raises(ValueError, match="exceeds voters"):
        hapy.Membership(1, unknown=2)
    with pytest.raises(ValueError, match="only 2 healthy"):
        hapy.Membership(3, healthy=2).take_down(3)
    with pytest.raises(ValueError, match="only 0 down"):
        hapy.Membership(3).remove(down=1)
