"""The twin after an engines review: a chat's prefix blocks hash its template's tokens and each message's role with
its contents (a chat and a completion of one text, or one text under two roles, share no prefix an engine would
not; a chat extended by a turn shares the whole earlier chat); serve prints the notes simulate prints for its
deployment; TensorRT-LLM's batch-waiting knobs each need the other; --speed is bounded. In-process only (the app
through httpx's ASGI transport; serve's server stubbed out)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from conftest import free_port

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin_admission import RequestAdmission
from phasewise.errors import PhasewiseError

M = "meta-llama/Llama-3.1-8B"
TEXT = " ".join(f"word{i}" for i in range(300))  # 600 built-in tokens


def _admission(block_tokens: int) -> RequestAdmission:
    """A RequestAdmission over a stand-in simulation (as tests/test_mutation_pins_twin.py): a text model of a 32k
    context and `block_tokens`-token prefix blocks."""
    model = SimpleNamespace(max_position_embeddings=32768, vocab_size=128256, vision=None)
    live = SimpleNamespace(model=model, cluster=SimpleNamespace(prefix_block_tokens=block_tokens), instances=[])
    return RequestAdmission(live, M, Tokenizer(), 16, 2**22, None)


def _chat(block_tokens: int, *messages: tuple[str, str], **fields):
    body = {"messages": [{"role": role, "content": text} for role, text in messages], "max_tokens": 2, **fields}
    return asyncio.run(_admission(block_tokens).chat_prompt(body))


def _shared(a: tuple, b: tuple) -> int:
    """Leading blocks two prompts share."""
    return next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("block_tokens", [1, 16])  # SGLang's radix cache per token, vLLM's 16-token blocks
def test_a_chat_and_a_completion_of_the_same_text_share_no_block(block_tokens):
    """The chat template's turn header comes before the content (Llama 3: <|start_header_id|>user<|end_header_id|>):
    the engines' caches match a raw completion of the text on none of it (the twin hashed only the contents: 600 of
    607 tokens hit)."""
    completion = asyncio.run(_admission(block_tokens).completion_prompt(TEXT, 2))
    chat = _chat(block_tokens, ("user", TEXT))
    assert (completion.tokens, chat.tokens) == (600, 600 + 4 + 3)  # the counts as before
    assert len(chat.blocks) == chat.tokens // block_tokens  # the template's tokens are hashed too
    assert _shared(completion.blocks, chat.blocks) == 0


def test_the_same_text_under_two_roles_parts_at_the_role():
    """A system and a user message of one text share the turn's start token only (SGLang, 1-token keys), no full
    16-token block (vLLM)."""
    user, system = ("user", TEXT), ("system", TEXT)
    assert _shared(_chat(1, user).blocks, _chat(1, system, ("user", "hi")).blocks) == 1
    assert _shared(_chat(1, user).blocks, _chat(1, ("assistant", TEXT)).blocks) == 1
    assert _shared(_chat(16, user).blocks, _chat(16, system, ("user", "hi")).blocks) == 0


@pytest.mark.parametrize("block_tokens", [1, 16])
def test_identical_chats_and_a_chat_extended_by_a_turn_share_the_whole_earlier_chat(block_tokens):
    """Multi-turn chat, the case prefix caching exists for: the earlier chat's every full block, the reply's
    opening (an assistant turn's header) among them, is a prefix of the next turn's."""
    first = [("system", "you are terse " * 50), ("user", TEXT)]
    turn = _chat(block_tokens, *first)
    assert _chat(block_tokens, *first).blocks == turn.blocks
    longer = _chat(block_tokens, *first, ("assistant", "fine " * 40), ("user", "and then?"))
    assert longer.blocks[:len(turn.blocks)] == turn.blocks
    assert _shared(turn.blocks, longer.blocks) == turn.tokens // block_tokens


def test_tools_are_hashed_inside_the_first_message_and_counted_as_before():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather " * 20}}]
    plain = _chat(1, ("user", "hello there"))
    with_tools = _chat(1, ("user", "hello there"), tools=tools, tool_choice="none")
    tools_tokens = with_tools.tokens - plain.tokens
    assert tools_tokens > 20 and plain.tokens == Tokenizer().count("hello there") + 4 + 3
    assert _shared(plain.blocks, with_tools.blocks) == 3  # the first turn's header, then the tools' JSON


def test_the_twin_reports_no_cached_tokens_between_a_completion_and_a_chat_of_one_text():
    """End to end (the reviewer's roles.py, in process): SGLang's twin with --enable-cache-report: the chat after a
    completion of its text reports no cached tokens (it reported 3,000 of 3,007); the same chat again reports its
    whole prompt but the last token's, as SGLang computes at least that one."""
    from phasewise.apps.twin import LiveSim, create_app
    from phasewise.sim.deployment import collocated

    live = LiveSim(collocated(M, "h100-sxm", engine="sglang"), speed=1000.0)
    app = create_app(live, M, Tokenizer(), prompt_tokens_details=True)
    chat = {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 2}

    async def run() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                         base_url="http://twin") as client:
            usages = []
            for path, body in (("/v1/completions", {"prompt": TEXT, "max_tokens": 2}),
                               ("/v1/chat/completions", chat), ("/v1/chat/completions", chat)):
                r = await client.post(path, json=body, timeout=30)
                assert r.status_code == 200, r.text
                usages.append(r.json()["usage"])
            return usages

    completion, chat_first, chat_again = asyncio.run(run())
    assert completion["prompt_tokens"] == 600 and chat_first["prompt_tokens"] == 607
    assert "prompt_tokens_details" not in chat_first  # nothing cached: omitted, as SGLang omits 0
    assert chat_again["prompt_tokens_details"]["cached_tokens"] == 606


class _NoServer:
    """serve's uvicorn server, stubbed: it returns at once instead of listening."""

    def __init__(self, config, live, say) -> None:
        self.stopped_now = False

    def run(self) -> None:
        return None


@pytest.mark.parametrize("flags, words", [
    (["--router", "dynamo_kv", "--kv-overlap-score-weight", "0.5", "--router-temperature", "0.7"],
     "note --router dynamo_kv, --kv-overlap-score-weight, --router-temperature: one instance takes every request"),
    (["--router", "prefix_aware"], "note --router prefix_aware: one instance takes every request"),
    (["--arch", "disagg", "--router", "prefix_aware"], "note --router prefix_aware: one prefill instance"),
    (["--replicas", "2", "--prefix-caching", "off", "--router", "prefix_aware"],
     "note --router prefix_aware routes by the instances' prefix caches"),
    (["--arch", "disagg", "--prefill-hardware", "h100-sxm", "--decode-hardware", "b200"],
     "note KV transfers costed over rdma"),
])
def test_serve_prints_simulates_notes_before_its_banner(run_cli, monkeypatch, flags, words):
    monkeypatch.setattr("phasewise.apps.twin.draining_server", lambda: _NoServer)
    monkeypatch.setenv("COLUMNS", "400")  # one note a line
    code, out, err = run_cli("serve", "--port", str(free_port()), *flags)
    assert code == 0, err
    lines = out.splitlines()
    note = next(n for n, line in enumerate(lines) if words in line)
    banner = next(n for n, line in enumerate(lines) if line.startswith("phasewise twin:"))
    assert note < banner


def test_serve_prints_no_note_where_the_router_has_a_choice(run_cli, monkeypatch):
    monkeypatch.setattr("phasewise.apps.twin.draining_server", lambda: _NoServer)
    code, out, err = run_cli("serve", "--port", str(free_port()), "--replicas", "2", "--router", "prefix_aware")
    assert code == 0 and "note" not in out, (out, err)


@pytest.mark.parametrize("knobs, lone, other", [
    ({"batch_wait_max_tokens_ratio": 0.5}, "--batch-wait-max-tokens-ratio", "--batch-wait-timeout-iters"),
    ({"batch_wait_max_tokens_ratio": 0.5, "batch_wait_timeout_iters": 0}, "--batch-wait-max-tokens-ratio",
     "--batch-wait-timeout-iters"),
    ({"batch_wait_timeout_iters": 8}, "--batch-wait-timeout-iters", "--batch-wait-max-tokens-ratio"),
])
def test_a_batch_waiting_knob_without_the_other_is_refused(knobs, lone, other):
    """TensorRT-LLM waits only while both limits are unmet (py_executor.py _waiting_requests: stop_waiting = count
    >= batch_wait_timeout_iters or tokens >= batch_wait_max_tokens_ratio x max_num_tokens): either alone, the other
    at its default 0, never holds a prompt (simulate gave the same TTFT with and without it)."""
    from phasewise.specs import load_hardware
    from phasewise.specs.engines import resolve_engine

    with pytest.raises(PhasewiseError, match=f"^{lone} needs {other} > 0 too"):
        resolve_engine("trtllm", load_hardware("h100-sxm"), knobs)
    both = {"batch_wait_timeout_iters": 8, "batch_wait_max_tokens_ratio": 0.5}
    assert resolve_engine("trtllm", load_hardware("h100-sxm"), both).batch_wait == (8, 0.5)


@pytest.mark.parametrize("command", ["simulate", "serve"])
def test_the_cli_refuses_the_ratio_alone_in_one_line(run_cli, monkeypatch, command, tmp_path):
    monkeypatch.setattr("phasewise.apps.twin.draining_server", lambda: _NoServer)  # never listens, refused or not
    tail = ["--rate", "20", "--requests", "10"] if command == "simulate" else ["--port", str(free_port())]
    code, out, err = run_cli(command, "--engine", "trtllm", "--batch-wait-max-tokens-ratio", "0.5", *tail)
    assert code == 2 and "--batch-wait-max-tokens-ratio needs --batch-wait-timeout-iters > 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    deployment = tmp_path / "dep.yaml"  # the deployment file's field too
    deployment.write_text(f"model: {M}\ninstances:\n  - hardware: h100-sxm\n    engine: trtllm\n"
                          "    batch_wait_max_tokens_ratio: 0.5\n")
    code, out, err = run_cli(command, "--deployment", str(deployment), *tail)
    assert code == 2 and "--batch-wait-max-tokens-ratio needs --batch-wait-timeout-iters > 0" in err


@pytest.mark.parametrize("speed", [1e300, 2e6, 1e-300, 5e-4, float("nan"), float("inf"), 0.0])
def test_speed_out_of_its_range_is_refused(speed):
    """At 1e300 a request's simulated latency rounded to 0 on the simulated clock (wall seconds x speed)."""
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import collocated

    with pytest.raises(PhasewiseError, match=r"^--speed must be a finite number > 0 within \[0.001, 1e\+06\]"):
        LiveSim(collocated(M, "h100-sxm"), speed=speed)


def test_speed_at_its_bounds_is_taken_and_the_cli_refuses_beyond_in_one_line(run_cli, monkeypatch):
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import collocated

    assert [LiveSim(collocated(M, "h100-sxm"), speed=s).speed for s in (1e-3, 1e6)] == [1e-3, 1e6]
    monkeypatch.setattr("phasewise.apps.twin.draining_server", lambda: _NoServer)  # never listens, refused or not
    code, _, err = run_cli("serve", "--speed", "1e300", "--port", str(free_port()))
    assert code == 2 and err.startswith("error: --speed must be a finite number > 0 within [0.001, 1e+06]")
    assert len(err.strip().splitlines()) == 1
