"""The review of the commands' help and do-nothing flags (help texts that hid or misstated what runs, flags that
changed nothing without a word): each finding's fix, checked through the CLI as a user meets it, or through
sim/api.py build where the fix is a note or a default."""

from __future__ import annotations

import pytest

from phasewise.sim.api import build
from phasewise.specs.catalog import packaged


@pytest.fixture
def help_of(run_cli, monkeypatch):
    """A command's --help at 400 columns (rich wraps nothing), its table's borders and line breaks read as spaces."""
    monkeypatch.setenv("COLUMNS", "400")

    def read(*command: str) -> str:
        code, out, err = run_cli(*command, "--help")
        assert code == 0, err
        return " ".join(out.replace("│", " ").split())

    return read


def option_help(text: str, flag: str) -> str:
    """The help of `flag` in a command's flattened --help: from its row (the flag, then its <type>) to the next
    option's row."""
    import re

    rest = text[text.index(f" {flag} <") + len(flag) + 2:]
    following = re.search(r" --[a-z0-9-]+(/--[a-z0-9-]+)? <", rest)
    return rest[:following.start()] if following else rest


# 1. --engine's help shows the @version syntax (rich dropped "[@version]" as markup) and every engine that runs
@pytest.mark.parametrize("command", ["simulate", "estimate", "serve", "plan"])
def test_engine_help_shows_the_version_syntax(help_of, command):
    assert "serving engine[@version]" in option_help(help_of(command), "--engine")


def test_engine_help_lists_every_preset_and_host_profile(help_of):
    engine = option_help(help_of("simulate"), "--engine")
    assert "vllm@0.12" in engine
    for name in [*packaged("engine_presets.yaml")["presets"], *packaged("engines.yaml")["engines"]]:
        assert name in engine, name  # trtllm-bench, trtllm-pytorch, ascendra-lp, ascendra-hp were left out


def test_no_help_text_loses_square_brackets_to_rich_markup():
    import typer.main
    from rich.markup import RE_TAGS

    from phasewise.apps.cli import app

    eaten = []

    def walk(command, path: str) -> None:
        texts = [("", command.help or "")] + [(p.name, getattr(p, "help", None) or "") for p in command.params]
        for name, text in texts:
            for match in RE_TAGS.finditer(text):
                if not match.group(1) or len(match.group(1)) % 2 == 0:  # an unescaped [tag]
                    eaten.append((path, name, match.group(0)))
        for sub in getattr(command, "commands", {}).values():
            walk(sub, f"{path} {sub.name}")

    walk(typer.main.get_command(app), "phasewise")
    assert eaten == []


# 2. edge and device-cloud list the engines and precisions they take, no scheduler preset they refuse
@pytest.mark.parametrize("command", ["edge", "device-cloud"])
def test_device_commands_list_what_they_take(help_of, command):
    text = help_of(command)
    engine, precision = option_help(text, "--engine"), option_help(text, "--precision")
    assert "serving engine" not in engine and "vllm-v0" not in engine and "sarathi" not in engine
    for name in packaged("engines.yaml")["engines"]:
        assert name in engine, name
    for name in packaged("quant.yaml")["schemes"]:  # w4a16-g32, mxfp4 ran but were not listed
        assert name in precision.split()[1].split("|"), name  # (after its "<str>")


def test_device_commands_run_a_listed_host_profile_and_precision(run_cli):
    code, out, err = run_cli("edge", "--engine", "trtllm-pytorch", "--precision", "w4a16-g32", "--split", "8,8,8,8",
                             "--subsequences", "4", "--json")
    assert code == 0, err


# 4. router settings with one instance to choose among: a note, not silence
def _router_notes(**kwargs) -> list[str]:
    return [n for n in build(requests=20, rate=4, **kwargs).notes if "the router has no choice" in n]


def test_router_flags_with_one_instance_get_a_note():
    (note,) = _router_notes(router="dynamo_kv", kv_overlap_score_weight=0.0, router_temperature=2.0,
                            router_kv_events=False)
    assert note.startswith("--router dynamo_kv, --kv-overlap-score-weight, --no-router-kv-events, "
                           "--router-temperature: one instance takes every request")
    assert _router_notes(router="random")
    assert not _router_notes(router="dynamo_kv", router_queue_threshold=1.0)  # its queue holds before one instance
    assert not _router_notes(router="dynamo_kv", kv_overlap_score_weight=0.0, replicas=2)


def test_router_flags_with_one_prefill_instance_get_a_note():
    # the router picks the prefill instance by its cost, the decode one by decode blocks (and temperature) alone
    (note,) = _router_notes(arch="disagg", decode_workers=2, router="dynamo_kv", kv_overlap_score_weight=0.0,
                            router_temperature=2.0)
    assert note.startswith("--kv-overlap-score-weight: one prefill instance takes every request")
    assert _router_notes(arch="disagg", router="random")  # one prefill, one decode
    assert not _router_notes(arch="disagg", decode_workers=2, router="random")


def test_router_note_in_simulate_output(run_cli):
    code, out, err = run_cli("simulate", "--requests", "10", "--rate", "4", "--router", "dynamo_kv",
                             "--kv-overlap-score-weight", "0", "--json")
    assert code == 0, err
    assert any("the router has no choice" in note for note in __import__("json").loads(out)["notes"])


# 5. device-cloud: --adapter-layers without a draft is refused as --acceptance is; --setup says what it replaces
def test_adapter_layers_need_draft_tokens(run_cli):
    code, out, err = run_cli("device-cloud", "--draft-tokens", "0", "--adapter-layers", "8", "--json")
    assert code == 2 and "--adapter-layers needs --draft-tokens >= 1" in err and "Traceback" not in err
    code, out, err = run_cli("device-cloud", "--draft-tokens", "0", "--json")
    assert code == 0, err


def test_setup_help_names_the_flags_it_replaces(help_of):
    setup = option_help(help_of("device-cloud"), "--setup")
    assert "replaces --devices to --adapter-layers" in setup and "--prompt-len to --acceptance still apply" in setup
    assert "the flags below" not in setup


# 6. plan --batch-caps: vLLM's A100 exception
def test_batch_caps_help_names_the_a100_exception(help_of):
    caps = option_help(help_of("plan"), "--batch-caps")
    assert "70 GB or more," not in caps and "but A100s (256" in caps


# 7. units and meanings stated
def test_weights_read_gbps_help_says_gigabytes(help_of):
    for command in ("estimate", "serve"):
        assert "GB/s (gigabytes a second" in option_help(help_of(command), "--weights-read-gbps")


def test_acceptance_help_states_meaning_and_range(help_of):
    assert "[1, 1 + --medusa-heads]" in option_help(help_of("edge"), "--acceptance")
    device_cloud = option_help(help_of("device-cloud"), "--acceptance")
    assert "probability" in device_cloud and "[0, 1)" in device_cloud


# 8. validate states the scaled model's defaults, each flag's on its own
def test_validate_help_states_layers_and_hidden_defaults(help_of):
    text = help_of("validate")
    layers, hidden = option_help(text, "--layers"), option_help(text, "--hidden")
    assert "6 on cpu" in layers and "the model's own with --device cuda" in layers
    assert "giving one leaves the other at its default" in layers
    assert "768 on cpu" in hidden


# 10. --kv-link's default: rdma where prefill and decode cannot share a node
def test_kv_link_help_states_the_rdma_default(help_of):
    assert "more GPUs together than one node holds" in option_help(help_of("simulate"), "--kv-link")
    assert "costed over rdma" in option_help(help_of("plan"), "--kv-link")


# 11. --autoscaler kpa alone scales on concurrency, Knative's default metric
def test_kpa_defaults_to_concurrency():
    spec = build(replicas=4, autoscale_min=1, autoscaler="kpa", autoscale_target=10, rate=2, requests=10)
    assert spec.deployment.autoscaled()[0][1].metric == "concurrency"


# 12. --seed where nothing draws: a note
def test_seed_with_a_trace_gets_a_note():
    notes = build(trace="azure-conv", trace_limit=10, seed=5).notes
    assert any(n.startswith("--seed 5: nothing in this run draws") for n in notes)
    assert not any("--seed" in n for n in build(trace="azure-conv", trace_limit=10).notes)
    drawn = build(trace="azure-conv", trace_limit=10, seed=5, replicas=2, router="random").notes
    assert not any("--seed" in n for n in drawn)  # the random router draws
    assert not any("--seed" in n for n in build(requests=10, rate=2, seed=5).notes)  # open-loop arrivals draw
