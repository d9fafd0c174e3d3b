"""The session-host policy: warm minimum, headroom, least loaded first, refusal when full, idle retirement,
the backoff between failed host starts, and the watch that finds hung hosts."""

from __future__ import annotations

import pytest

from deployments.placement import HostOptions, HostPlacement, HostWatch, StartBackoff, node_for_next_host


def ready_pool(options: HostOptions, *ids: str) -> HostPlacement:
    placement = HostPlacement(options)
    for host_id in ids:
        placement.starting(host_id)
        placement.ready(host_id, now=0.0)
    return placement


def test_the_minimum_is_started_then_the_headroom_is_kept():
    placement = HostPlacement(HostOptions(sessions_per_host=4, min_hosts=2, max_hosts=5, free_slots=3))
    assert placement.hosts_to_start() == 2
    placement = ready_pool(placement.options, "a", "b")
    assert placement.hosts_to_start() == 0  # 8 free slots
    for _ in range(6):
        assert placement.choose() is not None
    assert placement.free_slots() == 2
    assert placement.hosts_to_start() == 1  # fewer than 3 free: one more host, in the background


def test_a_host_being_started_counts_as_headroom():
    placement = ready_pool(HostOptions(sessions_per_host=4, min_hosts=1, max_hosts=3, free_slots=2), "a")
    placement.choose(), placement.choose(), placement.choose()
    assert placement.hosts_to_start() == 1
    placement.starting("b")
    assert placement.hosts_to_start() == 0
    assert placement.choose() == "a"  # the starting host takes nobody until it is ready
    assert placement.choose() is None and placement.any_starting() and not placement.full()


def test_least_loaded_host_first():
    placement = ready_pool(HostOptions(sessions_per_host=4, min_hosts=2, max_hosts=2, free_slots=0), "a", "b")
    picks = [placement.choose() for _ in range(4)]
    assert sorted(picks) == ["a", "a", "b", "b"]
    placement.release("a", now=1.0)
    assert placement.choose() == "a"


def test_full_when_every_allowed_host_is_full():
    placement = ready_pool(HostOptions(sessions_per_host=2, min_hosts=1, max_hosts=2, free_slots=0), "a", "b")
    assert [placement.choose() for _ in range(4)].count(None) == 0
    assert placement.choose() is None and placement.full()
    assert placement.hosts_to_start() == 0  # at the maximum
    placement.release("b", now=1.0)
    assert not placement.full() and placement.choose() == "b"


def test_no_headroom_still_keeps_one_free_slot():
    placement = ready_pool(HostOptions(sessions_per_host=1, min_hosts=1, max_hosts=3, free_slots=0), "a")
    placement.choose()
    assert placement.hosts_to_start() == 1


def test_idle_hosts_above_the_minimum_are_retired_after_the_delay():
    options = HostOptions(sessions_per_host=4, min_hosts=1, max_hosts=4, free_slots=2, retire_idle_s=60)
    placement = ready_pool(options, "a", "b", "c")
    busy = placement.choose()
    assert placement.to_retire(now=30.0) == []  # not idle long enough
    retired = placement.to_retire(now=61.0)
    assert len(retired) == 2 and busy not in retired
    for host_id in retired:
        placement.remove(host_id)
    assert placement.to_retire(now=1000.0) == []  # the busy host is the minimum
    placement.release(busy, now=1000.0)
    assert placement.to_retire(now=2000.0) == []  # the minimum is kept even when idle


def test_retirement_keeps_the_headroom():
    options = HostOptions(sessions_per_host=4, min_hosts=1, max_hosts=3, free_slots=6, retire_idle_s=0)
    placement = ready_pool(options, "a", "b")
    for _ in range(3):
        placement.choose()  # "a" and "b" share 3 sessions: neither is empty
    placement.starting("c")
    placement.ready("c", now=0.0)
    assert placement.to_retire(now=10.0) == []  # without "c" only 5 slots would be free
    placement.release("a", now=10.0)
    assert placement.to_retire(now=10.0) == ["c"]  # now 6 would be


def test_a_lost_host_takes_its_slots_away():
    placement = ready_pool(HostOptions(sessions_per_host=2, min_hosts=2, max_hosts=2, free_slots=0), "a", "b")
    placement.choose(), placement.choose()
    placement.remove("a")
    assert set(placement.hosts) == {"b"} and placement.sessions == 1
    assert placement.hosts_to_start() == 1  # back to the minimum


@pytest.mark.parametrize("bad", [dict(sessions_per_host=0), dict(min_hosts=3, max_hosts=2), dict(free_slots=-1),
                                 dict(inbox_size=0)])
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError, match="session hosts"):
        HostOptions(**bad)


def test_new_hosts_go_to_the_fitting_node_with_fewest_hosts():
    nodes = {"b": {"CPU": 2.0, "voice": 1.0}, "a": {"CPU": 1.0, "voice": 1.0}, "c": {"CPU": 8.0}}
    spread = HostOptions(resources={"voice": 0.01})
    assert node_for_next_host(nodes, spread, {}) == "a"  # a tie: the lowest id, so the choice is stable
    assert node_for_next_host(nodes, spread, {"a": 1}) == "b"
    assert node_for_next_host(nodes, spread, {"a": 1, "b": 1, "c": 0}) == "a"  # c has no "voice": never
    assert node_for_next_host(nodes, HostOptions(num_cpus=2.0), {"b": 3}) == "c"  # a lacks the CPUs
    assert node_for_next_host(nodes, HostOptions(resources={"gpu_node": 1.0}), {}) is None


def test_a_host_that_died_while_starting_is_replaced_soon_then_less_often():
    placement = HostPlacement(HostOptions(sessions_per_host=4, min_hosts=1, max_hosts=2, free_slots=1))
    backoff = StartBackoff(first_s=1.0, max_s=10.0)
    assert backoff.may_start(now=0.0)
    placement.starting("a")
    placement.remove("a")  # it died in its __init__: its slots no longer count
    assert placement.hosts_to_start() == 1
    assert backoff.failed(now=100.0) == 1.0  # soon: a caller may be waiting for that host
    assert not backoff.may_start(now=100.5) and backoff.may_start(now=101.0)
    delays = [backoff.failed(now=200.0 + 100 * i) for i in range(5)]
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]  # a host that never starts is not restarted in a tight loop
    assert backoff.failures == 6
    backoff.succeeded()  # a host became ready
    assert backoff.may_start(now=0.0) and backoff.failed(now=1000.0) == 1.0


def test_two_starts_failing_at_once_keep_the_later_wait():
    backoff = StartBackoff(first_s=1.0, max_s=60.0)
    assert backoff.failed(now=10.0) == 1.0
    assert backoff.failed(now=10.0) == 2.0  # the second failure in a row waits longer, counted from now
    assert backoff.failed(now=11.5) == 4.0
    assert not backoff.may_start(now=15.0) and backoff.may_start(now=15.5)


def test_the_backoff_survives_a_very_long_outage():
    backoff = StartBackoff(first_s=1.0, max_s=60.0)
    for i in range(5000):
        assert backoff.failed(now=float(i * 60)) <= 60.0


def test_a_host_that_misses_pings_in_a_row_is_hung_and_an_answer_forgives():
    watch = HostWatch(misses=2, unreachable_s=600, now=0.0)
    assert not watch.missed_ping("a")
    watch.answered("a", 5.0)  # a slow answer in between: the count starts again
    assert not watch.missed_ping("a")
    assert watch.missed_ping("a")  # two in a row
    watch.forget("a")
    assert not watch.missed_ping("a")


def test_the_replica_is_unreachable_only_when_hosts_are_wanted_and_none_answered_for_long():
    watch = HostWatch(misses=2, unreachable_s=600, now=0.0)
    assert not watch.unreachable(True, 599.0)  # a new replica has its start-up time
    assert watch.unreachable(True, 601.0)
    assert not watch.unreachable(False, 601.0)  # no host wanted (min_session_hosts=0, no calls): nothing to reach
    watch.answered("b", 601.0)
    assert not watch.unreachable(True, 1000.0) and watch.unreachable(True, 1202.0)


def test_ping_settings_are_checked():
    with pytest.raises(ValueError, match="ping"):
        HostOptions(ping_misses=0)
    with pytest.raises(ValueError, match="ping"):
        HostOptions(ping_timeout_s=0)
