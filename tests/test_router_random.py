"""Router random (NVIDIA Dynamo's --router-mode random, sim/routers/random_choice.py): uniform, repeatable draws;
blind to load, so in a fixed-length closed loop a request waits behind a full instance while another has a free
seat, where round robin's turn and least outstanding work find the free one; in YAML, the planner and a launch
script."""

from __future__ import annotations

from collections import Counter

import pytest

from phasewise.apps.launch import launch_commands
from phasewise.errors import PhasewiseError
from phasewise.plan.options import ROUTERS as PLAN_ROUTERS
from phasewise.sim.api import deployment_from_flags, run
from phasewise.sim.routers import make_router


def test_draws_are_uniform_and_repeat():
    instances = ["a", "b", "c", "d"]
    first, second = make_router("random", instances), make_router("random", instances)
    draws = [first.pick() for _ in range(4000)]
    assert draws == [second.pick() for _ in range(4000)]  # seeded: a run repeats
    counts = Counter(draws)
    assert set(counts) == set(instances)
    assert all(900 <= n <= 1100 for n in counts.values()), counts  # 1,000 each, sd ~27
    assert make_router("random", ["only"]).pick() == "only"
    # a disaggregated deployment's prefill and decode routers draw apart (seeded by their instances' names)
    prefill, decode = make_router("random", ["pre0", "pre1"]), make_router("random", ["dec0", "dec1"])
    assert [prefill.pick()[-1] for _ in range(64)] != [decode.pick()[-1] for _ in range(64)]


def closed_loop(router: str):
    # four single-seat replicas, four clients, fixed lengths: at every moment one seat is free where a request ends
    return run(check_invariants=True, model="meta-llama/Llama-3.1-8B", replicas=4, router=router, max_num_seqs=1,
               concurrency=4, requests=80, isl=512, osl=128)


def test_a_blind_draw_queues_behind_a_full_replica_where_a_seat_stands_free():
    ttft_ms = {router: closed_loop(router).summary()["ttft_ms"]["mean"]
               for router in ("least_outstanding", "round_robin", "random")}
    # least outstanding work finds the free seat, and round robin's turn falls on it (every request takes as long)
    assert ttft_ms["round_robin"] == pytest.approx(ttft_ms["least_outstanding"], rel=0.01)
    # a draw lands on a busy replica 3 times in 4 and waits for part of a request's ~1.3 s life there
    assert ttft_ms["random"] > 10 * ttft_ms["least_outstanding"]
    res = closed_loop("random")
    assert len(res.ttft_s) == 80 and (res.ttft_s > 0).all()  # every request served once (invariants checked above)
    busy = [i["iterations"] for i in res.summary()["instances"]]
    assert min(busy) > 0 and len(set(busy)) > 1  # every replica drawn, not evenly


def test_random_in_yaml_the_planner_and_a_launch_script(tmp_path):
    assert "random" in PLAN_ROUTERS
    path = tmp_path / "dep.yaml"
    path.write_text("model: meta-llama/Llama-3.1-8B\nrouter: random\ninstances:\n"
                    "  - {role: collocated, hardware: h100-sxm, tp: 1, replicas: 2}\n")
    dep = deployment_from_flags(deployment=str(path))
    assert dep.router == "random"
    _, front, _ = launch_commands(dep)
    assert "--router-mode random" in " ".join(front.comments)
    with pytest.raises(PhasewiseError, match="random"):  # an unknown router's one-line error lists it
        deployment_from_flags(router="randomly")
