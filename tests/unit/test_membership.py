"""Scaling plans, node choice, new-member starts and the lag autoscaler, without Ray."""

from __future__ import annotations

import numpy as np
import pytest

from actors.coordination import CoordinatorCore
from actors.errors import ConfigError, RequestError
from actors.intake import PartitionIntake
from actors.membership import LagAutoscaler, MemberStart, choose_node, plan_scale
from actors.requests import parse_scale_request
from actors.weighting import make_policy
from tests.helpers import ArrayReader


def _partitions(assignment: dict[int, list[int]]) -> list[int]:
    return sorted(p for owned in assignment.values() for p in owned)


@pytest.mark.parametrize(
    ("start", "target"),
    [(2, 6), (6, 3), (3, 1), (1, 6), (4, 4), (5, 2)],
)
def test_plans_keep_every_partition_once_and_balance_shares(start, target):
    assignment = {m: list(range(6))[m::start] for m in range(start)}
    plan = plan_scale(
        assignment, target, weights={m: 1.0 / start for m in range(start)}, next_id=start
    )
    assert len(plan.assignment) == target
    assert _partitions(plan.assignment) == list(range(6))
    sizes = [len(owned) for owned in plan.assignment.values()]
    assert max(sizes) - min(sizes) <= 1
    # Only partitions whose owner changed are moves, and each is moved once.
    moved = [p for p, _, _ in plan.moves]
    assert len(moved) == len(set(moved))
    for partition, donor, receiver in plan.moves:
        assert partition in assignment[donor] and partition in plan.assignment[receiver]
    kept = sum(len(set(assignment[m]) & set(plan.assignment.get(m, []))) for m in assignment)
    assert kept + len(plan.moves) == 6


def test_growing_moves_only_the_excess_and_new_ids_follow_the_largest_used():
    plan = plan_scale({0: [0, 2, 4], 1: [1, 3, 5]}, 4, weights={}, next_id=7)
    assert plan.add == [7, 8] and plan.retire == []
    assert len(plan.moves) == 2  # 3+3 -> 2+2+1+1: one partition from each
    assert all(len(plan.assignment[m]) == 1 for m in plan.add)


def test_shrinking_retires_the_lowest_weight_members_unless_named():
    assignment = {0: [0], 1: [1], 2: [2], 3: [3]}
    weights = {0: 0.4, 1: 0.05, 2: 0.3, 3: 0.25}
    assert plan_scale(assignment, 2, weights=weights, next_id=4).retire == [1, 3]
    assert plan_scale(assignment, 2, weights=weights, next_id=4, retire=[0]).retire == [0, 1]
    # Equal weights: the newest goes first (it has learned least).
    assert plan_scale(assignment, 3, weights={}, next_id=4).retire == [3]


def test_plans_refuse_what_cannot_be_done_in_one_line():
    assignment = {0: [0, 1], 1: [2, 3]}
    with pytest.raises(ConfigError, match="4 partition"):
        plan_scale(assignment, 5, weights={}, next_id=2)
    with pytest.raises(ConfigError, match=">= 1"):
        plan_scale(assignment, 0, weights={}, next_id=2)
    with pytest.raises(ConfigError, match="cannot retire"):
        plan_scale(assignment, 1, weights={}, next_id=2, retire=[9])
    with pytest.raises(ConfigError, match="fewer than"):
        plan_scale(assignment, 2, weights={}, next_id=2, retire=[0])


def test_the_new_member_goes_to_the_node_with_fewest_members_that_has_room():
    assert choose_node({"a": 2, "b": 1, "c": 0}, {"a": 1.0, "b": 1.0, "c": 1.0}, 0.5) == "c"
    # The emptiest node is full: the next emptiest with room.
    assert choose_node({"a": 2, "b": 1, "c": 0}, {"a": 1.0, "b": 1.0, "c": 0.2}, 0.5) == "b"
    # Ties go to the node with the most free CPUs.
    assert choose_node({"a": 1, "b": 1}, {"a": 0.5, "b": 1.5}, 0.5) == "b"
    assert choose_node({"a": 1}, {"a": 0.1}, 0.5) is None


def test_a_clone_starts_from_the_given_weights_and_a_bad_policy_is_refused():
    class Learner:
        weights = None
        pretrained = None

        def set_weights(self, weights):
            self.weights = weights

        def pretrain(self, x, y):
            self.pretrained = (x, y)

    learner = Learner()
    MemberStart("clone-best", weights=[np.ones(2)], source_member=0).apply(learner)
    assert learner.weights is not None and learner.pretrained is None
    learner = Learner()
    MemberStart("distill", x=np.zeros((3, 2)), y=np.ones(3)).apply(learner)
    assert learner.pretrained is not None and learner.weights is None
    with pytest.raises(ConfigError, match="new-member policy"):
        MemberStart("warm")


def test_the_autoscaler_grows_on_rising_lag_shrinks_when_idle_and_waits_between():
    scaler = LagAutoscaler(1, 3, high_lag_rows=1_000, idle_s=10, cooldown_s=5)
    assert scaler.decide(0, 2, 5_000) is None  # no trend yet
    assert scaler.decide(1, 2, 6_000) == 3
    assert scaler.decide(2, 3, 9_000) is None  # cooling down (and at the maximum)
    assert scaler.decide(10, 3, 20_000) is None  # at the maximum
    assert scaler.decide(11, 3, 0) is None  # idle from now
    assert scaler.decide(20, 3, 0) is None
    assert scaler.decide(21, 3, 0) == 2
    assert scaler.decide(40, 1, 0) is None  # never below the minimum
    with pytest.raises(ConfigError):
        LagAutoscaler(3, 2)


def test_the_coordinator_takes_members_in_and_lets_them_go_keeping_the_others_windows():
    core = CoordinatorCore({0: [0], 1: [1]}, window=100, min_eval_rows=10)
    for mid in (0, 1):
        core.mark_snapshot(mid)
    labels = np.tile([0.0, 1.0], 50)
    good = np.where(labels > 0.5, 0.9, 0.1)
    core.record_scores(np.stack([good, 1 - good], axis=1), labels)
    core.record_stats(1, {"rows": 500})
    core.add_member(2, [2])
    assert core.member_ids == [0, 1, 2]
    core.mark_snapshot(2)
    weights = core.mixing_weights()
    assert weights[0] > 0.5 and weights[1] == 0.0 and weights[2] > 0  # average share for new
    with pytest.raises(ConfigError, match="above every id"):
        core.add_member(1, [])
    core.remove_member(1)
    assert core.member_ids == [0, 2] and core.rows == 500  # its rows still count
    assert core.summary()["retired"] == [{"id": 1, "rows": 500, "dead_letter": 0}]
    assert core.policy.member_scores() == [1.0, None]  # member 0 kept its window
    arrays, meta = core.state()
    again = CoordinatorCore({0: [0], 2: [2]}, window=100, min_eval_rows=10)
    again.restore(arrays, meta)
    assert again.rows == 500
    core.remove_member(2)
    with pytest.raises(ConfigError):
        core.remove_member(0)  # the last member stays


def test_a_policy_drops_one_column_and_keeps_the_rest():
    policy = make_policy("accuracy", 3, window=10, min_rows=1)
    outputs = np.array([[0.9, 0.1, 0.6]] * 4)
    policy.observe(outputs, np.ones(4), np.array([True, True, True]))
    before = policy.member_scores()
    policy.drop(1)
    assert policy.n_members == 2 and policy.member_scores() == [before[0], before[2]]


def test_an_intake_gives_a_partition_back_at_its_position_and_takes_one_in():
    x = np.zeros((100, 2), np.float32)
    y = np.zeros(100, np.float32)
    intake = PartitionIntake([ArrayReader(x, y, 0), ArrayReader(x, y, 1)], batch_size=10)
    intake.next()
    reader = intake.remove(0)
    assert reader.partition == 0 and [r.partition for r in intake.readers] == [1]
    intake.remove(1)
    assert intake.next() is None  # nothing to read, no division by zero
    intake.add(ArrayReader(x, y, 5))
    assert intake.next().partition == 5
    with pytest.raises(KeyError):
        intake.remove(0)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b'{"members": 3}', "text/plain", 415, "application/json"),
        (b"{nope", "application/json", 400, "not valid JSON"),
        (b"[3]", "application/json", 400, '"members"'),
        (b'{"members": 0}', "application/json", 400, "[1, 256]"),
        (b'{"members": true}', "application/json", 400, "integer"),
        (b'{"members": 3, "policy": "warm"}', "application/json", 400, "clone-best"),
        (b'{"members": 3, "retire": "1"}', "application/json", 400, "member ids"),
        (b'{"members": 3, "size": 1}', "application/json", 400, "unknown field"),
    ],
)
def test_bad_scale_requests_get_a_4xx_naming_the_problem(body, content_type, status, says):
    with pytest.raises(RequestError) as caught:
        parse_scale_request(body, content_type)
    assert caught.value.status == status and says in caught.value.message


def test_a_good_scale_request_parses():
    body = b'{"members": 6, "policy": "distill", "retire": [1]}'
    assert parse_scale_request(body, "application/json; charset=utf-8") == {
        "members": 6,
        "policy": "distill",
        "retire": [1],
    }


def test_the_scale_command_says_in_one_line_when_no_cluster_answers(capsys):
    from pipelines.cli import main

    assert main(["scale", "--members", "3", "--address", "127.0.0.1:1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no Ray cluster at --address '127.0.0.1:1'" in error[0]


def test_bench_scale_refuses_a_bad_flag_in_one_line(capsys):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["bench", "scale", "--rows", "0"])
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_drift_events_call_for_a_challenger_or_a_retirement_once_each():
    from actors.membership import drift_scaling

    def member(mid, action, acted, weight):
        return {"id": mid, "weight": weight, "drift": {"action": action, "acted": acted}}

    answered: dict[int, int] = {}
    members = [member(0, "spawn", 1, 0.5), member(1, "spawn", 0, 0.5)]
    assert drift_scaling(members, answered, limit=3) == [("spawn", 0)]
    assert drift_scaling(members, answered, limit=3) == []  # answered already
    members = [member(0, "spawn", 2, 0.5), member(1, "spawn", 1, 0.5)]
    assert drift_scaling(members, answered, limit=3) == [("spawn", 0)]  # room for one
    answered = {}
    members = [member(0, "retire", 1, 0.0), member(1, "retire", 1, 0.7)]
    # Only the member at chance (weight 0) goes; one above chance stays.
    assert drift_scaling(members, answered, limit=4) == [("retire", 0)]
    assert drift_scaling([member(0, "retire", 2, 0.0)], {}, limit=4) == []  # never the last
