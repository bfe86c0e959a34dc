"""The twin's API as vLLM's OpenAI server answers it, after a review: n streamed choices each carry the non-streamed
text and their own running usage; tools and tool calls are prompt tokens, and a tool_choice the twin cannot answer is
a 400 naming it; fields vLLM refuses (suffix, an unknown response_format) or the filler cannot carry (beam search,
structured output) are refused by name; vLLM's sampling rules (greedy n, temperature's range, an empty stop, a 64-bit
seed); stream_options' values typed; an empty model name is the served model; a message's content typed.
127.0.0.1 only."""

import json

import httpx
import pytest
from conftest import serving

from phasewise.apps import twin, twin_admission
from phasewise.apps.tokenizer import Tokenizer
from phasewise.sim.deployment import collocated

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "weather?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "word " * 300,
                                         "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def url():
    live = twin.LiveSim(collocated(M, "h100-sxm", max_num_seqs=64), speed=50.0)
    with serving(twin.create_app(live, M, Tokenizer())) as base:
        yield base


def _post(url: str, path: str, **fields) -> httpx.Response:
    body = {"model": M, "max_tokens": 2, **fields}
    body.setdefault("messages" if path == CHAT else "prompt", USER if path == CHAT else "hi")
    return httpx.post(url + path, json=body, timeout=30)


def _refused(r: httpx.Response, param: str, words: str = "") -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"], error


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_streamed_n_choices_each_carry_the_non_streamed_text_and_their_own_running_usage(url, path):
    """Each choice's pump runs ahead of the chunks sent: a chunk's text and usage are the positions it was produced
    for, not how far its choice's simulation has got."""
    plain = _post(url, path, max_tokens=12, n=3).json()
    key = "text" if path == COMPLETIONS else "content"
    whole = [c["text"] if path == COMPLETIONS else c["message"]["content"] for c in plain["choices"]]
    texts: dict[int, str] = {}
    with httpx.stream("POST", url + path, json={"model": M, "max_tokens": 12, "n": 3, "stream": True,
                                                "stream_options": {"include_usage": True,
                                                                   "continuous_usage_stats": True},
                                                **({"prompt": "hello world"} if path == COMPLETIONS else
                                                   {"messages": USER})}, timeout=30) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            for choice in event["choices"]:
                i = choice["index"]
                got = choice[key] if path == COMPLETIONS else choice["delta"].get(key)
                texts[i] = texts.get(i, "") + (got or "")
                assert event["usage"]["completion_tokens"] == len(texts[i].split()), (i, texts[i], event["usage"])
    assert [texts[i] for i in range(3)] == whole


def test_tools_and_tool_calls_are_prompt_tokens(url):
    """vLLM renders tools and an assistant message's tool calls into the chat template: 300 words each."""
    plain = _post(url, CHAT, tool_choice="none").json()["usage"]["prompt_tokens"]
    tools = _post(url, CHAT, tools=[TOOL], tool_choice="none").json()["usage"]["prompt_tokens"]
    assert tools - plain >= 300

    def history(arguments: str) -> list[dict]:
        call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        return USER + [{"role": "assistant", "content": None, "tool_calls": [call]},
                       {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]

    short = _post(url, CHAT, messages=history("{}")).json()["usage"]["prompt_tokens"]
    long = _post(url, CHAT, messages=history(json.dumps({"q": "word " * 300}))).json()["usage"]["prompt_tokens"]
    assert long - short >= 300
    # "required" with no tools is "none" (vLLM, as OpenAI)
    assert _post(url, CHAT, tools=[], tool_choice="required").status_code == 200


@pytest.mark.parametrize("fields, words", [
    ({"tools": [TOOL]}, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'),
    ({"tools": [TOOL], "tool_choice": "auto"}, '"auto" tool choice requires --enable-auto-tool-choice'),
    ({"tools": [TOOL], "tool_choice": "required"}, "no tool call"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "no tool call"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "does not match"),
    ({"tools": [TOOL], "tool_choice": "bogus"}, "Invalid value for `tool_choice`"),
    ({"tool_choice": "required"}, "`tools` must be set"),
])
def test_a_tool_choice_the_twin_cannot_answer_is_a_400_naming_it(url, fields, words):
    _refused(_post(url, CHAT, **fields), "tool_choice", words)


@pytest.mark.parametrize("tools", [{"a": 1}, [{"type": "function"}], [{"type": "code", "function": {"name": "f"}}],
                                   [{"function": {"name": ""}}]])
def test_malformed_tools_are_a_400_naming_tools(url, tools):
    _refused(_post(url, CHAT, tools=tools, tool_choice="none"), "tools")


@pytest.mark.parametrize("path, fields, param, words", [
    (COMPLETIONS, {"suffix": "!"}, "suffix", "suffix is not currently supported"),
    (COMPLETIONS, {"use_beam_search": True}, "use_beam_search", "beam"),
    (CHAT, {"use_beam_search": True}, "use_beam_search", "beam"),
    (CHAT, {"response_format": {"type": "bogus"}}, "response_format", "json_schema"),
    (CHAT, {"response_format": "json"}, "response_format", "json_schema"),
    (CHAT, {"response_format": {"type": "json_object"}}, "response_format", "filler"),
    (CHAT, {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
     "response_format", "filler"),
    (COMPLETIONS, {"response_format": {"type": "json_object"}}, "response_format", "filler"),
    (CHAT, {"guided_json": {"type": "object"}}, "guided_json", "structured"),
    (CHAT, {"structured_outputs": {"regex": "a+"}}, "structured_outputs", "structured"),
])
def test_fields_vllm_refuses_or_filler_cannot_carry_are_refused_by_name(url, path, fields, param, words):
    _refused(_post(url, path, **fields), param, words)


def test_a_text_response_format_and_no_beam_search_are_taken(url):
    r = _post(url, CHAT, response_format={"type": "text"}, use_beam_search=False)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("fields, param, words", [
    ({"temperature": 0, "n": 4}, "n", "n must be 1 when using greedy sampling, got 4."),
    ({"temperature": 0.0, "n": 2}, "n", "greedy"),
    ({"temperature": 2.5}, "temperature", "[0, 2]"),
    ({"stop": ""}, "stop", "stop cannot contain an empty string."),
    ({"stop": ["\n", ""]}, "stop", "stop cannot contain an empty string."),
    ({"seed": 2**63}, "seed", "64-bit"),
    ({"seed": -(2**63) - 1}, "seed", "64-bit"),
])
def test_vllm_sampling_rules_are_400s_naming_the_field(url, fields, param, words):
    for path in (COMPLETIONS, CHAT):
        _refused(_post(url, path, **fields), param, words)


def test_sampling_values_at_vllm_bounds_are_taken(url):
    for fields in ({"temperature": 0, "n": 1}, {"temperature": 2}, {"temperature": 0.001, "n": 2},
                   {"seed": 2**63 - 1}, {"seed": -(2**63)}, {"stop": ["\n"]}, {"n": 3}):
        r = _post(url, COMPLETIONS, **fields)
        assert r.status_code == 200, (fields, r.text)


@pytest.mark.parametrize("options, param", [  # ("false", 0, "yes" are booleans as vLLM's pydantic models read them)
    ({"include_usage": "nope"}, "stream_options.include_usage"),
    ({"include_usage": 2}, "stream_options.include_usage"),
    ({"include_usage": True, "continuous_usage_stats": []}, "stream_options.continuous_usage_stats"),
    ({"include_usage": True, "continuous_usage_stats": " yes"}, "stream_options.continuous_usage_stats"),
])
def test_stream_options_values_must_be_booleans(url, options, param):
    _refused(_post(url, COMPLETIONS, stream=True, stream_options=options), param, "boolean")


def test_stream_options_false_or_null_sends_no_usage(url):
    for options in ({"include_usage": False}, {"include_usage": None, "continuous_usage_stats": None}):
        with httpx.stream("POST", url + COMPLETIONS, json={"model": M, "prompt": "hi", "max_tokens": 2,
                                                           "stream": True, "stream_options": options}) as r:
            assert r.status_code == 200
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert events and all("usage" not in e for e in events)


def test_an_empty_model_name_is_the_served_model(url):
    """vLLM's _is_model_supported: `if not model_name: return True`."""
    for path in (COMPLETIONS, CHAT):
        r = _post(url, path, model="")
        assert r.status_code == 200 and r.json()["model"] == M, r.text
    _refused(_post(url, CHAT, model=5), "model", "string")
    assert _post(url, CHAT, model="other").status_code == 404


@pytest.mark.parametrize("messages, words", [
    ([{"role": "user", "content": 12345}], "messages[0].content must be a string, a list of content parts or null"),
    ([{"role": "user", "content": {"text": "hi"}}], "messages[0].content"),
    ([{"role": "user", "content": True}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "text", "text": 7}]}], "messages[0].content[0].text"),
    ([{"role": 3, "content": "hi"}], "messages[0]"),
    (USER + [{"role": "assistant", "content": None, "tool_calls": {"id": "c"}}], "messages[1].tool_calls"),
    (USER + [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}],
     "messages[1].tool_calls[0]"),
])
def test_message_content_and_tool_calls_of_the_wrong_type_are_a_400_naming_them(url, messages, words):
    _refused(_post(url, CHAT, messages=messages), "messages", words)


def test_a_null_content_is_taken(url):
    messages = USER + [{"role": "assistant", "content": None}, {"role": "user", "content": "and?"}]
    assert _post(url, CHAT, messages=messages).status_code == 200


def test_a_body_nested_too_deep_to_write_back_is_a_400_not_a_500(url, monkeypatch):
    """A value the body's parser reads just within its depth can be too deep to write back a few calls deeper (a
    tool's parameters ~958 levels deep rendered as prompt JSON, a stop quoted in its error at ~962: each was a 500,
    seen); the twin answers 400."""
    def too_deep(_body):
        raise RecursionError("maximum recursion depth exceeded while encoding a JSON object")

    monkeypatch.setattr(twin_admission, "tools_text", too_deep)
    r = _post(url, CHAT, tools=[TOOL], tool_choice="none")
    assert r.status_code == 400 and "nested too deep" in r.json()["error"]["message"], r.text
    monkeypatch.undo()
    assert _post(url, CHAT).status_code == 200
