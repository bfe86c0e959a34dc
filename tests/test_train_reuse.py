"""`phasewise validate --train-reuse`: real training steps (forward recomputed vs reused) against the training cost
model, on a tiny model (skips cleanly without torch/transformers).

CI has no calibrated entry of its machine (the class-default `cpu-local` describes another CPU generation, off by
2-3x in absolute time here), so the quick test bounds what does not depend on the machine's absolute rates: the
speedup recompute/reuse, predicted vs measured, at a loose smoke bound (tens of milliseconds per step on a shared
2-core machine move by 10-30 %). The real figures (absolute times after `phasewise calibrate`) come from the full
command, `phasewise validate --train-reuse --hardware hw.yaml`, and are in the README.
"""

import json

import pytest

from phasewise.errors import PhasewiseError

pytest.importorskip("torch")
pytest.importorskip("transformers")

SMOKE_BOUND = 0.25  # median |error| of the speedup: a smoke bound (see above), not the 15 % target of the check
# predicted / measured step time, uncalibrated: the class default is 2-3x off this machine's rates (1.8-2.3x on a
# loaded 2-core run), so 5x either way bounds a broken cost model or timer, not the check's accuracy
ABSOLUTE_FACTOR = 5.0


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """A Llama config.json with a small vocabulary, so that the decoder layers (what reuse skips) and not the LM
    head dominate a tiny model's step."""
    path = tmp_path_factory.mktemp("tiny") / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
                                "intermediate_size": 704, "num_hidden_layers": 2, "num_attention_heads": 4,
                                "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
                                "hidden_act": "silu", "rms_norm_eps": 1e-5, "max_position_embeddings": 2048}))
    return str(path)


@pytest.fixture(scope="module")
def tiny_full(tiny_config):
    from phasewise.measure.train_reuse import train_reuse_validate

    return train_reuse_validate(tiny_config, "cpu-local", layers=2, hidden=256, grid=[(1, 64), (2, 64)],
                                repeats=4)


def test_quick_train_reuse_smoke_bound_and_directions(tiny_full):
    from phasewise.measure.train_reuse import METRICS, train_reuse_summary

    points, info = tiny_full
    assert len(points) == 2 and info["method"] == "full" and info["threads"] == 1
    for p in points:
        assert all(p.measured_s[m] > 0 and p.predicted_s[m] > 0 for m in METRICS)
        assert p.speedup("predicted") > 1 and p.saved_bytes > 0
    # reusing the forward saves time, for real: over the grid (at 1 x 64 tokens alone the saving, ~15-40 % of a
    # ~15 ms step, has once measured as -1.6 % on a busy 2-core CI machine)
    assert sum(p.measured_s["reuse_step"] for p in points) < sum(p.measured_s["step"] for p in points)
    stats = train_reuse_summary(points)
    assert stats["unfitted_speedup_median_abs_error"] <= SMOKE_BOUND, stats
    for p in points:
        for metric in ("step", "reuse_step"):
            assert 1 / ABSOLUTE_FACTOR < p.predicted_s[metric] / p.measured_s[metric] < ABSOLUTE_FACTOR, (metric, p)


def test_lora_variant_runs_and_is_cheaper(tiny_config):
    from phasewise.measure.train_reuse import train_reuse_validate

    points, info = train_reuse_validate(tiny_config, "cpu-local", layers=1, hidden=256, method="lora",
                                        grid=[(1, 64)], repeats=1)
    assert info["lora_rank"] == 16 and points[0].measured_s["step"] > 0
    assert points[0].predicted_s["backward_optimizer"] < 3 * points[0].predicted_s["forward"]


def test_bad_method_is_a_one_line_error():
    from phasewise.measure.train_reuse import train_reuse_validate

    with pytest.raises(PhasewiseError, match="--train-method 'qlora' is not one of full, lora"):
        train_reuse_validate("meta-llama/Llama-2-7b-hf", "cpu-local", method="qlora")


def test_cli_errors_and_json_shape(run_cli, tiny_config):
    code, _, err = run_cli("validate", "--train-reuse", "--serve", "--hardware", "cpu-local")
    assert code == 2 and "--train-reuse cannot be combined with --serve" in err
    code, _, err = run_cli("validate", "--train-reuse", "--pipeline", "2", "--hardware", "cpu-local")
    assert code == 2 and "--pipeline" in err
    code, _, err = run_cli("validate", "--train-reuse", "--dllm", "--hardware", "cpu-local")
    assert code == 2 and "--dllm" in err
    code, _, err = run_cli("validate", "--train-reuse", "--device", "cuda", "--hardware", "cpu-local")
    assert code == 2 and "use --device cpu" in err
    code, _, err = run_cli("validate", "--train-reuse", "--train-method", "qlora", "--hardware", "cpu-local")
    assert code == 2 and "full, lora" in err
    code, out, _ = run_cli("validate", "--train-reuse", "--quick", "--json", "--hardware", "cpu-local",
                           "--model", tiny_config, "--layers", "1", "--hidden", "128")
    assert code == 0
    data = json.loads(out)
    assert {"info", "summary", "points"} <= set(data) and len(data["points"]) == 3
    point = data["points"][0]
    assert set(point["measured_ms"]) == {"forward", "backward_optimizer", "optimizer", "step", "reuse_step"}
    assert set(point["measured_wall_ms"]) == set(point["measured_ms"])
    assert {"measured", "predicted", "unfitted"} == set(point["speedup"])
    assert data["summary"]["median_abs_error"] >= 0
