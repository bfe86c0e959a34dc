"""A trace's optional `priority` column carries each request's class; priority pools give each class its SLOs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.workload import load_trace


def _csv(tmp_path, rows, header="arrived_at,num_prefill_tokens,num_decode_tokens,priority"):
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_csv_and_jsonl_read_the_class_column(tmp_path):
    w = load_trace(str(_csv(tmp_path, [(0.0, 100, 10, 1), (0.5, 200, 20, 0), (1.0, 300, 30, 2)])))
    assert list(w.priority) == [1, 0, 2] and list(w.prompt_tokens) == [100, 200, 300]
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps({"arrived_at": t, "num_prefill_tokens": 10, "num_decode_tokens": 5,
                                          "priority": p}) for t, p in ((0, 0), (1, 3))))
    assert list(load_trace(str(path)).priority) == [0, 3]
    plain = _csv(tmp_path, [(0.0, 100, 10)], header="arrived_at,num_prefill_tokens,num_decode_tokens")
    assert load_trace(str(plain)).priority is None
    assert list(load_trace(str(_csv(tmp_path, [(0, 1, 1, 0), (1, 1, 1, 1), (2, 1, 1, 1)])), limit=2).priority) == [0, 1]


@pytest.mark.parametrize("value", ["-1", "x", "1.5", ""])
def test_a_bad_class_names_its_row(tmp_path, value):
    path = _csv(tmp_path, [(0.0, 100, 10, 0), (0.5, 200, 20, value)])
    with pytest.raises(PhasewiseError, match=r"line 3: priority must be an integer >= 0"):
        load_trace(str(path))


def test_priority_pools_deadlines_follow_the_class(tmp_path):
    """Class 0 has a tight TTFT SLO, class 1 a lax one: under the same load only class-0 requests move to HP."""
    rng = np.random.default_rng(0)
    n = 300
    arrival = np.cumsum(rng.exponential(1 / 60.0, n))
    prompts = np.where(np.arange(n) % 20 == 7, 6000, rng.integers(100, 800, n))
    classes = np.arange(n) % 2
    rows = [(f"{t - arrival[0]:.6f}", p, int(o), c) for t, p, o, c in zip(arrival, prompts, rng.integers(50, 300, n),
                                                                            classes)]
    work = load_trace(str(_csv(tmp_path, rows)))
    dep = build_deployment({"model": "meta-llama/Meta-Llama-3-8B", "instances": [
        dict(hardware="a100-sxm-80gb", engine="ascendra-lp", replicas=3, pool="lp"),
        dict(hardware="a100-sxm-80gb", engine="ascendra-hp", replicas=1, pool="hp")],
        "priority_pools": {"class_slo_ms": [[1000, 100], [600000, 100000]]}})
    res = simulate(dep, work, Slo(), check_invariants=True)
    hp = res.policy["priority_pools"]["hp_instances"]
    on_hp = np.isin(res.instance, hp)
    assert on_hp[classes == 0].sum() > 0
    assert on_hp[classes == 1].sum() == 0
