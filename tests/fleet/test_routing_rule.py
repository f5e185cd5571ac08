"""The routing rule itself (jobs.routing.choose, pure): who takes what, and the bound on how long a job may be
passed over, which is what keeps the fair order (quotas.fairness) within `wait_s` of itself."""

from __future__ import annotations

from jobs.routing import Candidate, Peer, choose, parse_advert

WAIT_S = 3.0
SDXL_HOLDER = Peer("w2", resident=frozenset({"sdxl"}))


def test_a_worker_takes_the_first_job_whose_model_it_holds_and_passes_over_one_held_elsewhere() -> None:
    queue = [Candidate("a", "sdxl"), Candidate("b", "flux"), Candidate("c", "sdxl")]
    decision = choose(queue, resident={"flux"}, serves=None, peers=[SDXL_HOLDER], now=100.0, wait_s=WAIT_S)
    assert decision.take == ["b"]
    assert decision.passed == []  # the worker is busy with "b": no idle pass to record


def test_an_idle_pass_starts_the_bound() -> None:
    queue = [Candidate("a", "sdxl"), Candidate("c", "sdxl")]
    decision = choose(queue, resident={"flux"}, serves=None, peers=[SDXL_HOLDER], now=100.0, wait_s=WAIT_S)
    assert decision.take == []
    assert decision.passed == ["a", "c"]  # the worker idles: the wait counts from now


def test_a_model_nobody_holds_is_taken_at_once_by_whoever_is_free() -> None:
    queue = [Candidate("a", "sd15"), Candidate("b", "sdxl")]
    decision = choose(queue, resident={"flux"}, serves=None, peers=[SDXL_HOLDER], now=0.0, wait_s=WAIT_S)
    assert decision.take == ["a"]


def test_a_job_passed_over_for_the_wait_is_anyones_again_at_its_fair_place() -> None:
    queue = [Candidate("a", "sdxl", passed_at=10.0), Candidate("b", "flux")]
    early = choose(queue, resident={"flux"}, serves=None, peers=[SDXL_HOLDER], now=12.9, wait_s=WAIT_S)
    assert early.take == ["b"] and early.passed == []  # already recorded: not recorded again
    due = choose(queue, resident={"flux"}, serves=None, peers=[SDXL_HOLDER], now=13.0, wait_s=WAIT_S)
    assert due.take == ["a", "b"]  # fair order again: the passed-over job first


def test_routing_off_is_plain_fair_order() -> None:
    queue = [Candidate("a", "sdxl"), Candidate("b", "flux"), Candidate("c")]
    decision = choose(queue, resident={"flux"}, serves=None, peers=[SDXL_HOLDER], now=0.0, wait_s=0)
    assert decision.take == ["a", "b", "c"] and decision.passed == []


def test_a_restricted_worker_never_takes_other_models_and_a_restricted_peer_does_not_count_as_holder() -> (
    None
):
    queue = [Candidate("a", "sdxl", passed_at=0.0), Candidate("b", "flux"), Candidate("c")]
    mine = choose(queue, resident=set(), serves=frozenset({"flux"}), peers=[], now=99.0, wait_s=WAIT_S)
    assert mine.take == ["b", "c"]  # "c" needs no particular model
    # A peer that holds sdxl but may not serve it (restricted to flux) is no reason to wait.
    peer = Peer("w3", serves=frozenset({"flux"}), resident=frozenset({"sdxl", "flux"}))
    other = choose(
        [Candidate("a", "sdxl")], resident=set(), serves=None, peers=[peer], now=0.0, wait_s=WAIT_S
    )
    assert other.take == ["a"]


def test_no_job_is_passed_over_longer_than_the_wait_whatever_the_fleet_holds() -> None:
    # Fairness bound: polls of a worker that holds nothing anyone wants, with every model held elsewhere. A job
    # is passed over (left while the worker takes another or nothing) only within `wait_s` of its first pass;
    # after that it is taken at its fair place.
    peers = [Peer("w2", resident=frozenset({"sdxl", "sd15"}))]
    passed_at: dict[str, float] = {}
    taken_at: dict[str, float] = {}
    queue_ids = [f"j{i}" for i in range(20)]
    longest_pass = 0.0
    now = 0.0
    while len(taken_at) < len(queue_ids):
        queue = [
            Candidate(j, "sdxl" if i % 2 else "sd15", passed_at.get(j))
            for i, j in enumerate(queue_ids)
            if j not in taken_at
        ]
        decision = choose(queue, resident={"flux"}, serves=None, peers=peers, now=now, wait_s=WAIT_S)
        for job_id in decision.passed:
            passed_at[job_id] = now
        first = decision.take[0] if decision.take else None
        for job in queue:
            if job.job_id not in decision.take:  # passed over at this poll
                longest_pass = max(longest_pass, now - passed_at[job.job_id])
            elif (
                job.job_id != first
            ):  # takeable, but the worker is busy with `first`: fair queuing, not routing
                break
        if first is not None:
            taken_at[first] = now
        now += 0.25
    assert 0 < longest_pass < WAIT_S
    assert sorted(taken_at, key=lambda j: taken_at[j]) == queue_ids  # fair order kept


def test_an_advert_of_an_older_worker_counts_as_a_worker_that_holds_nothing() -> None:
    assert parse_advert("w1", b"host:123") == Peer("w1")
    peer = parse_advert("w2", b'{"serves": ["sdxl"], "resident": ["sdxl", "sd15"]}')
    assert peer.serves == frozenset({"sdxl"}) and peer.holds("sdxl") and not peer.holds("sd15")
