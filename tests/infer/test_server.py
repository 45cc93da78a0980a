"""The HTTP server on a real uvicorn over loopback with a tiny model: OpenAI-shaped answers equal to the engine's,
SSE streaming, cancellation on client disconnect, malformed JSON, oversize prompts, limits, unknown models."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from lmfs.infer import Engine, SamplingParams  # noqa: E402
from lmfs.infer.server import ChatTemplate, Limits, Server, create_app  # noqa: E402

from .test_engine import CharTokenizer, make_model, reference  # noqa: E402

MODEL = "tiny"


class SlowEngine(Engine):
    """Sleeps a little per step, so a long request is still running when the client goes away."""

    delay = 0.0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.finished_reasons: list[str] = []

    def step(self):
        if self.delay:
            time.sleep(self.delay)
        done = super().step()
        self.finished_reasons += [r.finish_reason for r in done]
        return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    def __init__(self, engine, limits):
        server = Server(engine, MODEL, limits=limits, chat_template=ChatTemplate("plain", None))
        self.port = _free_port()
        config = uvicorn.Config(create_app(server), host="127.0.0.1", port=self.port, log_level="warning")
        self.uv = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.uv.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.uv.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = engine

    def stop(self):
        self.uv.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def model():
    return make_model(seed=2, dtype=torch.float32, context_length=256)


@pytest.fixture(scope="module")
def served(model):
    engine = SlowEngine(model, CharTokenizer(), max_batch=4, max_seq=256)
    running = Running(engine, Limits(max_tokens=200, max_prompt_tokens=100, max_queue=6))
    yield running
    running.stop()


def _sse(lines) -> list:
    events = []
    for line in lines:
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_health_and_models(served):
    h = httpx.get(served.url + "/health").json()
    assert h["status"] == "ok" and h["model"] == MODEL and h["max_batch"] == 4
    assert [m["id"] for m in httpx.get(served.url + "/v1/models").json()["data"]] == [MODEL]


def test_completion_equals_the_engine(served, model):
    tok = CharTokenizer()
    r = httpx.post(
        served.url + "/v1/completions",
        json={"model": MODEL, "prompt": "hello", "max_tokens": 12, "temperature": 0},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    want = tok.decode(reference(model, tok.encode("hello"), 12))
    assert doc["choices"][0]["text"] == want and doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"] == {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}
    assert doc["object"] == "text_completion" and doc["model"] == MODEL


def test_streaming_completion_and_chat(served):
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 20, "temperature": 0}
    full = httpx.post(served.url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
    with httpx.stream("POST", served.url + "/v1/completions", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert "".join(c["choices"][0]["text"] for c in chunks) == full
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and len(chunks) > 2
    chat = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 15,
        "temperature": 0,
    }
    whole = httpx.post(served.url + "/v1/chat/completions", json=chat, timeout=30).json()
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["role"] == "assistant"
    with httpx.stream(
        "POST", served.url + "/v1/chat/completions", json={**chat, "stream": True}, timeout=30
    ) as r:
        events = _sse(r.iter_lines())
    assert events[0]["choices"][0]["delta"]["role"] == "assistant" and events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == whole["choices"][0]["message"]["content"]


def test_client_disconnect_frees_the_slot(served):
    served.engine.delay = 0.02  # 200 tokens would take ≥ 4 s
    try:
        before = served.engine.finished_reasons.count("cancelled")
        body = {"model": MODEL, "prompt": "x", "max_tokens": 200, "temperature": 0, "stream": True}
        with httpx.stream("POST", served.url + "/v1/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # one chunk, then hang up
        deadline = time.time() + 8
        while time.time() < deadline:
            if served.engine.finished_reasons.count("cancelled") > before and served.engine.num_running == 0:
                break
            time.sleep(0.05)
        assert served.engine.finished_reasons.count("cancelled") == before + 1
        assert httpx.get(served.url + "/health").json()["running"] == 0
    finally:
        served.engine.delay = 0.0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"model": "gpt-17", "prompt": "a"}).encode(), 404, "does not exist"),
        (json.dumps({"prompt": "a" * 101}).encode(), 400, "at most 100"),
        (json.dumps({"prompt": "a", "max_tokens": 201}).encode(), 400, "limit of 200"),
        (json.dumps({"prompt": "a", "temperature": "hot"}).encode(), 400, "temperature"),
        (json.dumps({"prompt": ""}).encode(), 400, "prompt"),
        (json.dumps({"prompt": [1, 2, 999]}).encode(), 400, "vocabulary"),
    ],
    ids=[
        "malformed",
        "not-object",
        "unknown-model",
        "oversize-prompt",
        "max-tokens",
        "bad-field",
        "empty",
        "bad-token",
    ],
)
def test_bad_requests_get_a_message(served, body, status, words):
    r = httpx.post(served.url + "/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_bad_chat_messages(served):
    r = httpx.post(served.url + "/v1/chat/completions", json={"messages": [{"role": "user"}]})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]


def test_full_queue_answers_429(model):
    engine = SlowEngine(model, CharTokenizer(), max_batch=1, max_seq=256)
    engine.delay = 0.02
    running = Running(engine, Limits(max_tokens=200, max_prompt_tokens=100, max_queue=1))
    try:
        body = {"prompt": "x", "max_tokens": 150, "temperature": 0, "stream": True}
        with httpx.stream("POST", running.url + "/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()  # keep the iterator: closing it hangs up
            next(line for line in lines if line.startswith("data: "))
            assert engine.num_running == 1
            second = httpx.post(running.url + "/v1/completions", json={"prompt": "y", "max_tokens": 2})
            assert second.status_code == 429 and "busy" in second.json()["error"]["message"]
    finally:
        running.stop()


def test_chat_page_is_self_contained(served):
    r = httpx.get(served.url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "/v1/chat/completions" in html and MODEL in html
    assert "http://" not in html and "https://" not in html and "<script src" not in html


def test_concurrent_streams_are_complete_and_ungarbled(served, model):
    tok = CharTokenizer()
    prompts = [f"p{i} " * (1 + i % 3) for i in range(6)]  # 4 slots: two wait (the queue limit is 6)
    results: dict[int, str] = {}

    def client(i):
        body = {"prompt": prompts[i], "max_tokens": 10 + i, "temperature": 0, "stream": True}
        with httpx.stream("POST", served.url + "/v1/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            events = _sse(r.iter_lines())
        assert events[-1] == "[DONE]"
        results[i] = "".join(e["choices"][0]["text"] for e in events[:-1])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, p in enumerate(prompts):
        assert results[i] == tok.decode(reference(model, tok.encode(p), 10 + i))


def test_engine_params_reach_sampling(served):
    """Seeded sampling over HTTP is reproducible."""
    body = {"prompt": "seed", "max_tokens": 15, "temperature": 1.0, "top_k": 5, "seed": 7}
    a = httpx.post(served.url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
    b = httpx.post(served.url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
    assert a == b
    assert SamplingParams(top_k=5).top_k == 5
