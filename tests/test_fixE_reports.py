"""The reports of alchemist, ascendra and jupiter agree with their checks; device-cloud refuses flags its setup file
replaces; priority pools bound their class SLOs and find the trace's priority column."""

from __future__ import annotations

import pytest

from phasewise.scenarios import get_scenario


# --- alchemist: the memory figure and table show the run the memory check compares ---------------------------------
@pytest.fixture(scope="module")
def alchemist():
    return get_scenario("alchemist").run({"sweep_shares": "0.2", "requests": "600"})


def test_alchemist_memory_figure_and_table_show_the_checked_run(alchemist):
    check = next(c for c in alchemist.to_json()["checks"] if c["name"] == "peak training memory (offload vs recompute)")
    memory = next(f for f in alchemist.outcome.figures if f.layout.title.text == "Peak training memory per GPU")
    totals = {}
    for bar in memory.data:
        for label, gib in zip(bar.x, bar.y):
            totals[label] = totals.get(label, 0.0) + gib
    checked = [label for label in totals if "every layer offloaded" in label]
    assert len(checked) == 1, list(totals)
    assert totals[checked[0]] / totals["recompute"] == pytest.approx(check["phasewise"], rel=1e-9)
    hedged = [label for label in totals if label.startswith("offload (") and "layers kept on the GPU" in label]
    assert len(hedged) == 1, list(totals)  # the plotted offload run says how many layers it kept
    table = alchemist.outcome.tables[0]
    rows = {row[0]: row for row in table["rows"]}
    column = table["columns"].index("peak training GiB")
    assert rows[checked[0]][column] / rows["recompute"][column] == pytest.approx(check["phasewise"], abs=0.01)


# --- ascendra: goodput is a property of the attainment curve, not of the bisection's path -------------------------
def _noisy_attainment(rate: float) -> float:
    """Attainment that crosses 90 % three times (as Sarathi-Serve's does on 1,000 requests near 30 req/s): it misses
    in [30.0, 30.4), attains again in [30.4, 31.0), and misses from 31.0 on."""
    if rate < 30.0 or 30.4 <= rate < 31.0:
        return 0.91
    return 0.88


class _Fake:
    def __init__(self, share: float) -> None:
        self.share = share

    def attained(self):
        import numpy as np

        return np.array([self.share])


@pytest.mark.parametrize("top", [100.0, 37.0, 64.0, 31.0])
def test_ascendra_goodput_does_not_depend_on_the_search_path(monkeypatch, top):
    from phasewise.scenarios import ascendra

    monkeypatch.setattr(ascendra._Runs, "__call__", lambda self, policy, rate: _Fake(_noisy_attainment(rate)))
    setup = get_scenario("ascendra").resolve({"rate_max_rps": str(top), "requests": "50"})
    rate = ascendra._Runs(setup).goodput("sarathi")
    # the highest attaining rate of the 1 % grid (1.01^k) past which attainment stays below the target, whatever
    # the bisection's bracket (before: 30.86 from 100 req/s, 29.8 from 37)
    assert rate == pytest.approx(1.01 ** 345) and 30.9 < rate < 31.0


def test_ascendra_attainment_curves_agree_with_their_goodput_labels(scenario_defaults):
    result = scenario_defaults("ascendra")
    setup = result.setup
    figure = next(f for f in result.outcome.figures if f.layout.title.text.startswith("SLO attainment"))
    for curve in figure.data:
        goodput = float(curve.name.rsplit("goodput ", 1)[1].split(" req/s")[0])
        points = list(zip(curve.x, curve.y))
        assert any(abs(rate - goodput) < 0.05 and share >= setup["attainment"] for rate, share in points), \
            (curve.name, points)  # the curve reaches the target at its goodput
        above = [(rate, share) for rate, share in points if rate > goodput + 0.05 and share >= setup["attainment"]]
        assert not above, (curve.name, above)  # and not at any rate above it
    assert "goodput: the highest rate on a 1% grid" in figure.layout.title.text  # the definition, stated


# --- jupiter: the one-device row has no ratio to print ------------------------------------------------------------
def test_jupiter_table_prints_no_python_none():
    from types import SimpleNamespace

    from phasewise.scenarios.jupiter import baseline_table

    run = SimpleNamespace(ttft_s=0.5, tpot_s=0.02, end_s=3.0)
    table = baseline_table([{"mbps": 100.0, "jupiter": run, "layer": run, "tp": None}],
                           SimpleNamespace(ttft_s=0.37, tpot_s=0.098, end_s=12.92))
    assert table["rows"][-1] == ["-", "one device", 0.37, 98.0, 12.92, "-"]
    assert all(cell is not None for row in table["rows"] for cell in row)


# --- device-cloud: --setup replaces the device, cloud and link flags: giving both is refused ------------------------
DC_SETUP = """devices: 4
device_hardware: jetson-agx-orin
cloud_hardware: a6000
cloud_gpus: 8
uplink_mbps: 100
downlink_mbps: 100
latency_s: 0.01
"""


@pytest.mark.parametrize("flags, named", [
    (("--devices", "30", "--uplink-mbps", "5", "--cloud-gpus", "1"), "--devices, --cloud-gpus, --uplink-mbps do not"),
    (("--devices", "30"), "--devices does not apply with --setup"),  # the default's value, given: still refused
    (("--latency-ms", "3"), "--latency-ms does not apply with --setup"),
])
def test_device_cloud_refuses_flags_its_setup_file_replaces(run_cli, tmp_path, flags, named):
    path = tmp_path / "dc.yaml"
    path.write_text(DC_SETUP)
    code, out, err = run_cli("device-cloud", "--setup", str(path), *flags)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, (code, out, err)


def test_device_cloud_setup_alone_and_flags_alone_still_run(run_cli, tmp_path):
    path = tmp_path / "dc.yaml"
    path.write_text(DC_SETUP)
    code, out, err = run_cli("device-cloud", "--setup", str(path), "--output-len", "8", "--chunk", "64")
    assert code == 0 and "4 devices" in out, err
    code, out, err = run_cli("device-cloud", "--devices", "5", "--output-len", "8", "--chunk", "64")
    assert code == 0 and "5 devices" in out, err


# --- priority pools: class SLOs bounded; a priority column spelled otherwise is named, not skipped ------------------
POOLS = [dict(hardware="h100-sxm", replicas=2, pool="lp"), dict(hardware="h100-sxm", replicas=1, pool="hp")]


@pytest.mark.parametrize("classes, field", [
    ([[-500, 0], [20000, 500]], "priority_pools.class_slo_ms.0.0"),
    ([[500, 50], [20000, 0]], "priority_pools.class_slo_ms.1.1"),
    ([[float("nan"), 50]], "priority_pools.class_slo_ms.0.0"),
    ([], "priority_pools.class_slo_ms"),
])
def test_class_slos_must_be_positive(classes, field):
    from phasewise.errors import PhasewiseError
    from phasewise.sim.deployment import build_deployment

    with pytest.raises(PhasewiseError) as err:
        build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": POOLS,
                          "priority_pools": {"class_slo_ms": classes}})
    message = str(err.value)
    assert field in message and "\n" not in message


def test_class_slos_may_be_unbounded_in_a_dimension():
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": POOLS,
                            "priority_pools": {"class_slo_ms": [[float("inf"), 100], [3000, 200]]}})
    assert dep.priority_pools.class_slo_ms[0][0] == float("inf")


@pytest.mark.parametrize("suffix, lines", [
    (".csv", ["arrived_at,num_prefill_tokens,num_decode_tokens,Priority", "0.0,100,10,0", "0.5,200,20,1"]),
    (".jsonl", ['{"arrived_at": 0, "num_prefill_tokens": 100, "num_decode_tokens": 10, "Priority": 1}']),
    (".jsonl", ['{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1], "PRIORITY": 1}']),
])
def test_a_priority_column_spelled_otherwise_is_named(tmp_path, suffix, lines):
    from phasewise.errors import PhasewiseError
    from phasewise.workload import load_trace

    path = tmp_path / f"t{suffix}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PhasewiseError) as err:
        load_trace(str(path))
    message = str(err.value)
    assert "is not read: a request's class is the column 'priority', lower case (found columns: " in message
    assert "riority'" in message.split("found columns: ")[1].lower() and "\n" not in message


def test_a_trace_with_other_unknown_columns_still_reads(tmp_path):
    from phasewise.workload import load_trace

    path = tmp_path / "t.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens,priority,tenant\n0.0,100,10,1,a\n0.5,200,20,0,b\n")
    assert list(load_trace(str(path)).priority) == [1, 0]
