"""The CLI review's fixes: a deployment file's links follow the chips-apart rule the flags follow (KV and the
encoders' embeddings: NVLink and PCIe do not leave a node, rdma the default across chips); --out never overwrites a
file a --deployment file names; --tp beside both role TPs, booleans in a deployment's numeric fields, an autoscaler
with no room, `--engine NAME@`, empty or repeated items in integer lists and `--set` lists, and an unusable
`serve --host` are one-line errors; --encode-tp's errors name it."""

from __future__ import annotations

import socket

import pytest
import yaml

from phasewise.apps.cli_common import parse_ints
from phasewise.apps.cli_serve import check_listen_address
from phasewise.apps.simulate_view import check_records_out
from phasewise.errors import PhasewiseError
from phasewise.scenarios.base import Param, parse_value
from phasewise.sim.api import autoscale_flags, build, deployment_from_flags
from phasewise.sim.deployment import build_deployment, load_deployment
from phasewise.sim.encode_pool import encoder_cost
from phasewise.specs import load_hardware
from phasewise.specs.engines import resolve_engine

M = "meta-llama/Llama-3.1-8B"
VL = "qwen2.5-vl-7b"
# the README's deploy.yaml: prefill on H100s, decode on H200s (two machines)
README_GROUPS = [{"role": "prefill", "hardware": "h100-sxm", "tp": 2, "replicas": 1, "engine": "sglang",
                  "chunked_prefill_size": 8192},
                 {"role": "decode", "hardware": "h200-sxm", "tp": 1, "replicas": 2, "engine": "sglang",
                  "precision": "fp8", "max_running_requests": 256}]
ONE = [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]


def _file(tmp_path, data: dict, name: str = "dep.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


# --- 1. a deployment file's kv_link across chips, and on collocated instances --------------------------------------
@pytest.mark.parametrize("link", ["nvlink", "pcie"])
def test_a_file_cannot_move_kv_between_chips_over_a_node_link(tmp_path, link):
    path = _file(tmp_path, {"model": M, "kv_link": link, "instances": README_GROUPS})
    with pytest.raises(PhasewiseError, match=f"kv_link {link} cannot carry KV with prefill on h100-sxm and decode on "
                                             r"h200-sxm \(two machines\).*give kv_link: rdma"):
        load_deployment(path)


def test_a_file_without_kv_link_moves_kv_between_chips_over_rdma_and_says_so(tmp_path):
    path = _file(tmp_path, {"model": M, "instances": README_GROUPS})
    spec = build(deployment=path, rate=1, requests=2)
    assert spec.deployment.kv_link == "rdma"
    assert any("KV transfers costed over rdma with prefill on h100-sxm" in note and "default kv_link nvlink" in note
               for note in spec.notes)
    assert load_deployment(_file(tmp_path, {"model": M, "kv_link": "rdma", "instances": README_GROUPS},
                                 "rdma.yaml")).kv_link == "rdma"
    # one chip: nvlink by default, as before, and no note
    same = [dict(g, hardware="h100-sxm") for g in README_GROUPS]
    spec = build(deployment=_file(tmp_path, {"model": M, "instances": same}, "same.yaml"), rate=1, requests=2)
    assert spec.deployment.kv_link == "nvlink" and not any("KV transfers" in n for n in spec.notes)


def test_priority_pools_on_two_chips_cannot_migrate_over_nvlink():
    groups = [{"role": "collocated", "pool": "lp", "hardware": "h100-sxm", "engine": "ascendra-lp"},
              {"role": "collocated", "pool": "hp", "hardware": "h200-sxm", "engine": "ascendra-hp"}]
    with pytest.raises(PhasewiseError, match="kv_link nvlink cannot carry KV with lp on h100-sxm and hp on h200-sxm"):
        build_deployment({"model": M, "kv_link": "nvlink", "priority_pools": {}, "instances": groups})
    assert build_deployment({"model": M, "priority_pools": {}, "instances": groups}).kv_link == "rdma"


@pytest.mark.parametrize("link", ["rdma", "pcie"])
def test_a_collocated_file_refuses_a_kv_link_it_would_ignore(tmp_path, link):
    path = _file(tmp_path, {"model": M, "kv_link": link, "instances": ONE})
    with pytest.raises(PhasewiseError, match=f"kv_link: {link} carries KV between prefill and decode instances.*"
                                             "drop kv_link"):
        load_deployment(path)
    # the default, as plan --export writes it for a collocated strategy, still loads
    assert load_deployment(_file(tmp_path, {"model": M, "kv_link": "nvlink", "instances": ONE}, "n.yaml"))


# --- 2. --out and the files a --deployment file names ---------------------------------------------------------------
@pytest.mark.parametrize("field", ["hardware", "model"])
def test_out_refuses_to_overwrite_a_file_the_deployment_names(tmp_path, field):
    run = tmp_path / "run"
    run.mkdir()
    target = run / ("requests.csv" if field == "hardware" else "summary.json")
    target.write_text("x: 1\n")
    group = dict(ONE[0], hardware=str(target)) if field == "hardware" else ONE[0]
    path = _file(tmp_path, {"model": str(target) if field == "model" else M, "instances": [group]})
    place = "instances.0.hardware" if field == "hardware" else "model"
    with pytest.raises(PhasewiseError, match=rf"would overwrite --deployment '.*dep.yaml' \({place}\)"):
        check_records_out(str(run), "csv", {"--deployment": path})
    assert target.read_text() == "x: 1\n"
    check_records_out(str(tmp_path / "elsewhere"), "csv", {"--deployment": path})  # another --out is fine


# --- 3. --tp beside --prefill-tp and --decode-tp ---------------------------------------------------------------------
def test_tp_beside_both_role_tps_is_refused():
    with pytest.raises(PhasewiseError, match=r"--tp 4 sets the TP of a role given none of its own \(--prefill-tp, "
                                             r"--decode-tp\), and both are given here: drop --tp"):
        deployment_from_flags(arch="disagg", tp=4, prefill_tp=1, decode_tp=1)
    # --tp beside one of them sets the other role's
    dep = deployment_from_flags(arch="disagg", tp=2, prefill_tp=1)
    assert [g.tp for g in dep.instances] == [1, 2]


def test_serve_refuses_tp_typed_at_its_default_beside_both_role_tps(run_cli):
    # (--max-request-bytes 0, refused later, keeps a serve that passed these checks from starting its server)
    code, _, err = run_cli("serve", "--arch", "disagg", "--tp", "1", "--prefill-tp", "1", "--decode-tp", "1",
                           "--port", str(_free_port()), "--max-request-bytes", "0")
    assert code == 2 and "error: --tp sets the TP of a role given none of its own" in err


# --- 4. booleans in a deployment's numeric fields --------------------------------------------------------------------
@pytest.mark.parametrize("field", ["tp", "pp", "replicas", "max_num_seqs", "memory_fraction"])
def test_a_boolean_in_a_numeric_field_is_refused_by_name(tmp_path, field):
    path = _file(tmp_path, {"model": M, "instances": [dict(ONE[0], **{field: True})]})
    with pytest.raises(PhasewiseError, match=f"instances.0.{field}: must be a number, not true"):
        load_deployment(path)


def test_booleans_in_blocks_and_lists_are_refused_and_numbers_as_text_still_load(tmp_path):
    with pytest.raises(PhasewiseError, match="speculative.draft_tokens: must be a number, not true"):
        build_deployment({"model": M, "instances": ONE, "speculative": {"draft_tokens": True}})
    with pytest.raises(PhasewiseError, match="priority_pools.class_slo_ms: must be a number, not false"):
        build_deployment({"model": M, "instances": ONE, "priority_pools": {"class_slo_ms": [[100, False]]}})
    with pytest.raises(PhasewiseError, match="--tp: must be a number, not true"):
        deployment_from_flags(tp=True)
    # YAML reads 1e-3 (no dot) as text: a float field still takes it, as it did
    path = tmp_path / "text.yaml"
    path.write_text(f"model: {M}\ninstances:\n  - {{hardware: h100-sxm, memory_fraction: 5e-1}}\n")
    assert load_deployment(str(path)).instances[0].memory_fraction == 0.5


# --- 5. the encoders' link across chips ------------------------------------------------------------------------------
IMAGES = dict(model=VL, rate=1, requests=2, images_per_request=1, image_size="640x480", encode_workers=1)


@pytest.mark.parametrize("link", ["nvlink", "pcie"])
def test_encode_link_cannot_leave_a_node(link):
    with pytest.raises(PhasewiseError, match=f"--encode-link {link} cannot carry the embeddings with the encoders on "
                                             "h200-sxm and the instances they feed on h100-sxm"):
        build(**IMAGES, encode_hardware="h200-sxm", encode_link=link)


def test_encoders_on_another_chip_default_to_rdma_and_say_so(tmp_path):
    spec = build(**IMAGES, encode_hardware="h200-sxm")
    assert spec.deployment.encoders.link == "rdma"
    assert any("embeddings costed over rdma" in n and "--encode-link nvlink" in n for n in spec.notes)
    assert build(**IMAGES).deployment.encoders.link == "nvlink"  # the instances' chip: nvlink, as before
    enc = {"hardware": "h200-sxm", "link": "nvlink"}
    with pytest.raises(PhasewiseError, match="encoders.link nvlink cannot carry the embeddings with the encoders on "
                                             "h200-sxm and the collocated instances on h100-sxm"):
        load_deployment(_file(tmp_path, {"model": VL, "instances": ONE, "encoders": enc}))


# --- 6. --encode-tp's errors name it ---------------------------------------------------------------------------------
def test_encode_tp_errors_name_encode_tp(tmp_path):
    dep = deployment_from_flags(model=VL, encode_workers=1, encode_tp=8)
    with pytest.raises(PhasewiseError, match=r"^--encode-tp 8 does not divide num_attention_heads=28"):
        encoder_cost(dep)
    path = _file(tmp_path, {"model": VL, "instances": ONE, "encoders": {"hardware": "h100-sxm", "tp": 8}})
    with pytest.raises(PhasewiseError, match=r"^encoders.tp 8 does not divide"):
        encoder_cost(load_deployment(path))


# --- 7. an autoscaler with no replica to add -------------------------------------------------------------------------
def test_an_autoscaler_at_its_most_replicas_is_refused(tmp_path):
    with pytest.raises(PhasewiseError, match=r"--autoscale-min \(1\) is --replicas \(1\).*no replica to add"):
        autoscale_flags(1, None, 2.0, None, None, 1)
    assert autoscale_flags(1, None, 2.0, None, None, 2)["autoscale"]["min_replicas"] == 1
    group = dict(ONE[0], replicas=2, autoscale={"min_replicas": 2, "target": 2})
    with pytest.raises(PhasewiseError, match=r"instances.0.autoscale.min_replicas \(2\) is the group's replicas"):
        load_deployment(_file(tmp_path, {"model": M, "instances": [group]}))
    with pytest.raises(PhasewiseError, match=r"autoscale.min_replicas \(1\) is the group's replicas"):
        load_deployment(_file(tmp_path, {"model": M, "instances": ONE, "autoscale": {"min_replicas": 1, "target": 2}},
                              "d.yaml"))
    # the API still builds a pinned group (a comparison against the autoscaled one: tests/test_autoscaler.py)
    assert build_deployment({"model": M, "instances": [group]}).instances[0].replicas == 2


# --- 8. `--engine NAME@` ---------------------------------------------------------------------------------------------
def test_an_empty_engine_version_is_unknown():
    hw = load_hardware("h100-sxm")
    with pytest.raises(PhasewiseError, match=r"--engine vllm@: unknown version '' \(known: "):
        resolve_engine("vllm@", hw)
    resolve_engine("vllm", hw)  # no version: the default's
    with pytest.raises(PhasewiseError, match=r"unknown version '@'"):
        resolve_engine("vllm@@", hw)


# --- 9. integer lists: empty items and repeats -----------------------------------------------------------------------
@pytest.mark.parametrize(("text", "error"), [("1,,2", "an empty integer in the list"), ("1,2,", "an empty integer"),
                                             ("1,1", "names 1 twice"), ("1,01", "names 1 twice")])
def test_integer_lists_refuse_empty_items_and_repeats(text, error):
    with pytest.raises(PhasewiseError, match=f"--tp-options '{text}'.*{error}"):
        parse_ints("--tp-options", text)
    assert parse_ints("--tp-options", "1, 2,4") == (1, 2, 4)


def test_set_lists_refuse_empty_items_and_repeats_where_values_come_once():
    grid = Param([1, 4, 16, 64], "test")
    with pytest.raises(PhasewiseError, match="an empty value in the list"):
        parse_value("fireq", "batches", "1,,4", grid)
    with pytest.raises(PhasewiseError, match="names 1 twice"):
        parse_value("fireq", "batches", "1,1", grid)
    assert parse_value("fireq", "batches", "1,4", grid) == [1, 4]
    assert "each once" in grid.allowed()
    # probabilities, a fixed-length pair: a value may repeat
    probs = Param([1 / 3, 1 / 3, 1 / 3], "test", upper=1.0, lower=0.0, items=(1, 7))
    assert parse_value("odb-dllm", "jump_probs", "0.5,0.25,0.25", probs) == [0.5, 0.25, 0.25]
    assert parse_value("odb-dllm", "flat_tokens", "32,32", Param([32, 128], "test", length=2)) == [32, 32]
    with pytest.raises(PhasewiseError, match="an empty value in the list"):
        parse_value("odb-dllm", "jump_probs", "0.5,,0.5", probs)


# --- 10. serve --host ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_a_host_it_cannot_listen_on_before_any_banner(run_cli):
    with pytest.raises(PhasewiseError, match="--host 'bogus.invalid': "):
        check_listen_address("bogus.invalid", 8000)
    code, out, err = run_cli("serve", "--host", "bogus.invalid", "--port", str(_free_port()))
    assert code == 2 and "error: --host 'bogus.invalid'" in err and "http://" not in out
    with socket.socket() as taken:  # a port another server listens on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PhasewiseError, match=f"--host '127.0.0.1' --port {port}: cannot listen there"):
            check_listen_address("127.0.0.1", port)
    check_listen_address("127.0.0.1", _free_port())  # the default host, a free port
