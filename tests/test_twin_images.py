"""The twin takes images for a model with a vision encoder: an inline data: URL's size read from its header (PNG,
JPEG, GIF, WebP, BMP), an image by URL at the size the twin was started with, each adding its tokens to the prompt
and its patches to the encoder; 127.0.0.1 only."""

from __future__ import annotations

import base64
import struct

import httpx
import pytest
from conftest import serving

from phasewise.apps.image_header import data_url_size, image_size
from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import LiveSim, create_app
from phasewise.sim.deployment import collocated

VL = "qwen3-vl-30b-a3b"


def png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def data_url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize("data, size", [
    (png(1280, 720), (1280, 720)),
    (jpeg(640, 480), (640, 480)),
    (b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00" * 8, (300, 200)),
    (b"BM" + b"\x00" * 16 + struct.pack("<ii", 1024, -768) + b"\x00" * 8, (1024, 768)),
    (b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (799).to_bytes(3, "little") + (599).to_bytes(3, "little"),
     (800, 600)),
])
def test_image_headers_give_their_size(data, size):
    assert image_size(data) == size
    assert data_url_size(data_url(data)) == size


def test_what_is_not_an_image_header_gives_none():
    assert image_size(b"not an image") is None
    assert data_url_size("https://example.invalid/cat.png") is None
    assert data_url_size("data:image/png,rawtext") is None
    assert data_url_size("data:image/png;base64,!!!!") is None


@pytest.fixture(scope="module")
def twin():
    live = LiveSim(collocated(VL, "h100-sxm"))
    with serving(create_app(live, VL, Tokenizer(), url_image_px=(640, 480))) as url:
        yield url, live


def _chat(url: str, parts: list) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": VL, "max_tokens": 2, "messages": [{"role": "user", "content": parts}]})


def test_an_inline_image_adds_its_tokens_and_runs_the_encoder(twin):
    url, live = twin
    text = [{"type": "text", "text": "what is this"}]
    plain = _chat(url, text).json()["usage"]["prompt_tokens"]
    before = live.instances[0].stats.images_encoded
    # 1280x720 -> 1280x704: 80 x 44 = 3,520 patches, 880 merged + 2 markers = 882 tokens
    picture = {"type": "image_url", "image_url": {"url": data_url(png(1280, 720))}}
    with_image = _chat(url, text + [picture])
    assert with_image.status_code == 200, with_image.text
    assert with_image.json()["usage"]["prompt_tokens"] == plain + 882
    assert live.instances[0].stats.images_encoded == before + 1
    # an image by URL takes the size the twin was started with: 640x480 -> 20 x 15 merged + 2 = 302 tokens
    by_url = _chat(url, text + [{"type": "image_url", "image_url": {"url": "https://example.invalid/cat.jpg"}}])
    assert by_url.json()["usage"]["prompt_tokens"] == plain + 302


@pytest.mark.parametrize("part, message", [
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}, "does not hold a base64 PNG"),
    ({"type": "image_url", "image_url": {}}, "image_url.url must be a non-empty string"),
    ({"type": "image_url", "image_url": {"url": data_url(png(10, 3000))}}, "aspect ratios beyond 200:1"),
    ({"type": "image_url", "image_url": {"url": data_url(png(0, 10))}}, "outside 1..100,000 px"),
    ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "allowed: text, refusal, image_url"),
])
def test_bad_image_parts_are_a_400_naming_the_part(twin, part, message):
    r = _chat(twin[0], [{"type": "text", "text": "hi"}, part])
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "messages"
    assert error["message"].startswith("messages[0].content[1]: ") and message in error["message"], error


def test_an_image_by_url_without_a_size_is_refused():
    live = LiveSim(collocated(VL, "h100-sxm"))
    with serving(create_app(live, VL, Tokenizer())) as url:
        r = _chat(url, [{"type": "image_url", "image_url": {"url": "https://example.invalid/cat.jpg"}}])
    assert r.status_code == 400 and "start the twin with --image-size" in r.json()["error"]["message"]


def test_serve_image_size_is_checked_in_one_line(run_cli):
    for args, message in ((("--image-size", "10by10"), "--image-size must be WIDTHxHEIGHT"),
                          (("--model", "meta-llama/Llama-3.1-8B", "--image-size", "64x64"),
                           "--image-size: model 'meta-llama/Llama-3.1-8B' has no vision encoder"),  # serve's flag
                          (("--served-model-name", ""), "--served-model-name is empty"),  # not --model's name
                          (("--host", " "), "--host is empty")):
        code, out, err = run_cli("serve", "--model", VL, *args) if args[0] != "--model" else run_cli("serve", *args)
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_twin_with_disaggregated_encoders_encodes_there():
    from phasewise.sim.deployment import build_deployment

    deployment = build_deployment({"model": VL, "encoders": {"replicas": 1},
                                   "instances": [{"role": "collocated", "hardware": "h100-sxm"}]})
    live = LiveSim(deployment)
    with serving(create_app(live, VL, Tokenizer(), url_image_px=(640, 480))) as url:
        picture = {"type": "image_url", "image_url": {"url": data_url(png(1280, 720))}}
        reply = _chat(url, [{"type": "text", "text": "what is this"}, picture])
        assert reply.status_code == 200, reply.text
        worker = live.cluster.encoders.workers[0]
        assert worker.stats.images_encoded == 1 and live.instances[0].stats.images_encoded == 0
