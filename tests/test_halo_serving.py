"""Operator mappings in `simulate` and `plan` (perf/mapped_cost.py): a deployment's instance group names a mapping
and every iteration the simulator costs (prefill, mixed, decode runs) runs on the chip's substrates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.decode_line import DecodeLine
from phasewise.perf.mapped_cost import MappedCostModel, StepwiseDecode
from phasewise.perf.mapping import MappedCost
from phasewise.sim.api import run as sim_run
from phasewise.sim.deployment import collocated
from phasewise.sim.simulate import build_group
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.mappings import load_mapping

LLAMA2 = "meta-llama/Llama-2-7b-hf"
CHIP = dict(model=LLAMA2, hardware="halo-2.5d", precision="int8", kv_dtype="int8")


def mapped_model(mapping: str, engine: str = "ideal") -> MappedCostModel:
    return MappedCostModel(load_model(LLAMA2), load_hardware("halo-2.5d"), load_quant("int8", "int8"),
                           load_engine(engine), load_mapping(mapping))


def alone(mapping: str, prompt: int, output: int, engine: str = "ideal"):
    """One request alone in the system (a second arrives long after the first has finished)."""
    return sim_run(**CHIP, engine=engine, mapping=mapping, rate=1e-4, requests=2, isl=prompt, osl=output,
                   check_invariants=True)


@pytest.mark.parametrize("mapping", ["halo", "all-cim"])
def test_a_lone_request_takes_what_the_mapping_estimate_predicts(mapping):
    """TTFT is the mapped prefill of the prompt; TPOT the mean mapped decode step. The estimate's decode steps see
    contexts prompt .. prompt+output-1, the simulator's (output-1 of them, the first token comes from prefill)
    prompt .. prompt+output-2: half a step of context apart in the mean, ~2e-5 here; 0.1% covers it."""
    prompt, output = 1024, 64
    result = alone(mapping, prompt, output)
    assert result.rejected == 0 and np.all(np.isfinite(result.finish_s))
    cm = CostModel(load_model(LLAMA2), load_hardware("halo-2.5d"), load_quant("int8", "int8"), load_engine("ideal"))
    estimate = MappedCost(cm, load_mapping(mapping)).request(prompt, output, samples=output)
    ttft_s = result.first_token_s - result.arrival_s
    assert ttft_s == pytest.approx(np.full(2, estimate.prefill.latency_s), rel=1e-9)  # exactly the mapped prefill
    assert result.tpot_s == pytest.approx(np.full(2, estimate.decode_s / output), rel=1e-3)


def test_decode_runs_equal_step_by_step_costs():
    """The closed form (halo: attention on the CiD, a DecodeLine) and the step-by-step fallback (all-CiM: attention's
    KV competes for the arrays) both give what fast() gives at every step."""
    steps = np.arange(40, dtype=np.float64)
    seqs, context = 3, 700
    for mapping, kind in (("halo", DecodeLine), ("all-cid", DecodeLine), ("all-cim", StepwiseDecode)):
        cost = mapped_model(mapping, engine="vllm")
        line = cost.decode_line(seqs, seqs, seqs)
        assert isinstance(line, kind), mapping
        shape = BatchShape.uniform(seqs, 1, context)
        series, first = cost.decode_line_series(line, shape.decode_pairs, shape.decode_kv_tokens, steps, seqs, seqs)
        each = [cost.fast(BatchShape.uniform(seqs, 1, context + int(j))) for j in steps]
        assert series == pytest.approx([c[0] for c in each], rel=1e-12), mapping
        assert first == pytest.approx((each[0][0], each[0][2], each[0][3]), rel=1e-12)
        windowed, _ = cost.decode_series(shape, shape.decode_pairs + steps * seqs, shape.decode_kv_tokens + steps * seqs)
        assert windowed == pytest.approx(series, rel=1e-12)


def test_a_mixed_batch_runs_on_the_prefill_table():
    cost = mapped_model("halo")
    shape = BatchShape.uniform(2, 1, 500)
    shape.add(256, 0, logits=1)
    it = cost.mapped_iteration(shape)
    assert it.phase == "prefill" and {op.kind for op in it.operators if op.name == "qkv_proj"} == {"cim"}
    assert cost.fast(shape)[0] == pytest.approx(it.latency_s)  # ideal engine: no host work


def test_halo_beats_all_cid_on_long_prompts_and_all_cim_on_long_outputs():
    """The scenario's directions, served: prefill on the CiM wins long prompts; decode on the CiD long outputs."""
    def e2e(mapping: str, prompt: int, output: int) -> float:
        result = alone(mapping, prompt, output)
        return float(np.mean(result.finish_s - result.arrival_s))

    assert e2e("halo", 4096, 8) < e2e("all-cid", 4096, 8)
    assert e2e("halo", 256, 512) < e2e("all-cim", 256, 512)


def test_plain_groups_keep_the_roofline_cost_model():
    dep = collocated(LLAMA2, "halo-2.5d", precision="int8")
    cost, *_ = build_group(dep, dep.instances[0], 0)
    assert type(cost) is CostModel
    dep = collocated(LLAMA2, "halo-2.5d", precision="int8", mapping="attacc")
    cost, *_ = build_group(dep, dep.instances[0], 0)
    assert isinstance(cost, MappedCostModel) and cost.mapping.name == "attacc"


def test_deployment_file_names_a_mapping(run_cli, tmp_path):
    path = tmp_path / "dep.yaml"
    path.write_text(f"model: {LLAMA2}\ninstances:\n  - {{hardware: halo-2.5d, precision: int8, mapping: halo, "
                    "engine: vllm}\n")
    code, out, err = run_cli("simulate", "--deployment", str(path), "--rate", "4", "--requests", "30", "--isl", "512",
                             "--osl", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 30


def test_plan_with_a_mapping_ranks(run_cli):
    code, out, err = run_cli("plan", "--model", LLAMA2, "--hardware", "halo-2.5d", "--precisions", "int8",
                             "--mapping", "halo", "--gpus", "2", "--tp-options", "1,2", "--chunk-sizes", "2048",
                             "--batch-caps", "16", "--isl", "512", "--osl", "32", "--top", "1", "--workers", "2",
                             "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["rows"] and data["rows"][0]["goodput_rps"] > 0
    assert all(row["strategy"].endswith("int8 mapping halo") for row in data["rows"])  # the table names it
    assert any("tp=2" in line and "mapping" in line for line in data["pruned"])


@pytest.mark.parametrize("command, args, message", [
    ("simulate", ("--hardware", "h100-sxm", "--mapping", "halo"), "lists no substrates"),
    ("simulate", ("--hardware", "halo-2.5d", "--mapping", "halo-x"), "unknown mapping 'halo-x'"),
    ("simulate", ("--hardware", "halo-2.5d", "--mapping", "halo", "--tp", "2"), "use tp=1"),
    ("simulate", ("--hardware", "halo-2.5d", "--mapping", "halo", "--spec-tokens", "2"), "speculative"),
    ("plan", ("--hardware", "h100-sxm", "--mapping", "halo"), "lists no substrates"),
    ("plan", ("--hardware", "halo-2.5d", "--mapping", "nope"), "unknown mapping 'nope'"),
])
def test_bad_mapping_input_is_one_line(run_cli, command, args, message):
    rest = ("--rate", "1", "--requests", "5") if command == "simulate" else ("--gpus", "1", "--tp-options", "1")
    code, out, err = run_cli(command, "--model", LLAMA2, "--precision" if command == "simulate" else "--precisions",
                             "int8", *args, *rest)
    assert code == 2 and message in err and err.strip().count("\n") == 0, err


def test_a_mapping_file_needs_a_chip_it_can_resolve(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("prefill: {default: tpu}\ndecode: {default: cid}\n")
    dep = collocated(LLAMA2, "halo-2.5d", precision="int8", mapping=str(path))
    with pytest.raises(PhasewiseError, match="no substrate 'tpu'") as err:
        build_group(dep, dep.instances[0], 0)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mapping", ["halo", "all-cim"])
def test_mapped_energy_is_reported_by_substrate(mapping):
    """SimResult.policy['mapping']: a lone request's energy is its mapped prefill plus its output-1 decode steps
    (decode runs count n x their middle step: exact where a step's energy is linear in its context)."""
    prompt, output = 1024, 64
    result = alone(mapping, prompt, output)
    cost = mapped_model(mapping)
    steps = [cost.mapped_iteration(BatchShape.uniform(1, 1, prompt + j)) for j in range(output - 1)]
    per_request = cost.mapped_iteration(BatchShape.uniform(1, prompt, 0)).energy_j + sum(s.energy_j for s in steps)
    report = result.summary()["policy"]["mapping"]
    assert report["mappings"] == [mapping] and report["iterations"] == 2 * output
    assert report["energy_j"] == pytest.approx(2 * per_request, rel=1e-6)
    assert sum(report["by_substrate_j"].values()) == pytest.approx(report["energy_j"], rel=1e-12)
    plain = sim_run(**CHIP, engine="ideal", rate=1, requests=3, isl=64, osl=4)  # (vLLM keeps no INT8 KV cache)
    assert plain.summary()["policy"] == {}  # plain: no mapping figures
