"""The HTTP server against the engine called directly: 32 concurrent streaming clients on loopback.

Model: the 5.8M-parameter Llama-shaped lmfs model of ``test_generate_decode.py`` (random weights, seeded; a small
model makes the server's own overhead a larger share, the harder case), max_batch 32. Tokenizer: one CJK
character per id (three UTF-8 bytes each, so the streamed text goes through the incremental decoder).

* ``serve-32-clients`` / ``impl=lmfs-engine``: ``engine.generate`` of the 32 prompts in-process.
* ``serve-32-clients`` / ``impl=lmfs-server``: the same 32 requests as concurrent ``stream=true`` POSTs
  (httpx, asyncio) to ``lmfs``'s app on uvicorn in a child process on 127.0.0.1.

``tokens`` = 32 × 32 per round. extra_info: p50/p99 request latency and time to first chunk, and the count of
lost or garbled responses (every streamed text must equal the engine's greedy completion; asserted zero).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import statistics
import time

import pytest
import torch

pytestmark = pytest.mark.slow

CLIENTS, PROMPT, NEW = 32, 16, 32
CONFIG = dict(vocab_size=10_000, context_length=256, d_model=256, num_layers=4, num_heads=8, d_ff=672)


class CJKTokenizer:
    def __init__(self) -> None:
        self.vocab = {i: chr(0x4E00 + i).encode() for i in range(CONFIG["vocab_size"])}

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 0x4E00 for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(0x4E00 + i) for i in ids)


def _engine(threads: int):
    from lmfs.infer import Engine
    from lmfs.nn import TransformerConfig, TransformerLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CONFIG)).eval()
    return Engine(model, CJKTokenizer(), max_batch=CLIENTS, max_seq=PROMPT + NEW)


def _serve(port: int, threads: int) -> None:
    import uvicorn

    from lmfs.infer.server import ChatTemplate, Limits, Server, create_app

    server = Server(
        _engine(threads),
        "bench",
        limits=Limits(max_tokens=NEW, max_queue=4 * CLIENTS),
        chat_template=ChatTemplate("plain", None),
    )
    uvicorn.run(create_app(server), host="127.0.0.1", port=port, log_level="warning")


def _prompts() -> list[str]:
    g = torch.Generator().manual_seed(3)
    tok = CJKTokenizer()
    return [
        tok.decode(torch.randint(0, CONFIG["vocab_size"], (PROMPT,), generator=g).tolist())
        for _ in range(CLIENTS)
    ]


async def _clients(url: str, prompts: list[str]) -> list[tuple[str, float, float]]:
    import httpx

    async def one(client, prompt):
        t0 = time.perf_counter()
        first = None
        text = []
        body = {"prompt": prompt, "max_tokens": NEW, "temperature": 0, "stream": True}
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return None, 0.0, 0.0
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    if first is None:
                        first = time.perf_counter() - t0
                    text.append(json.loads(line[6:])["choices"][0]["text"])
        return "".join(text), first or 0.0, time.perf_counter() - t0

    limits = httpx.Limits(max_connections=CLIENTS + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(*(one(client, p) for p in prompts))


@pytest.fixture(scope="module")
def server(torch_threads_module):
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_serve, args=(port, torch_threads_module), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline or not proc.is_alive():
            proc.kill()
            pytest.fail("the server did not come up")
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.join(timeout=10)


@pytest.fixture(scope="module")
def torch_threads_module():
    import os

    return int(os.environ.get("LMFS_THREADS", "1"))


@pytest.fixture(scope="module")
def expected() -> list[str]:
    from lmfs.infer import SamplingParams

    engine = _engine(1)
    return [o.text for o in engine.generate(_prompts(), SamplingParams(temperature=0, max_tokens=NEW))]


@pytest.mark.parametrize("impl", ["lmfs-engine", "lmfs-server"])
def test_32_streaming_clients(benchmark, torch_threads, impl, server, expected):
    from lmfs.infer import SamplingParams

    prompts = _prompts()
    benchmark.group = "serve-32-clients"
    benchmark.extra_info.update(
        impl=impl,
        tokens=CLIENTS * NEW,
        clients=CLIENTS,
        threads=torch_threads,
        load=open("/proc/loadavg").read().split()[0],
    )
    if impl == "lmfs-engine":
        engine = _engine(torch_threads)
        params = SamplingParams(temperature=0, max_tokens=NEW)

        def run():
            return [(o.text, 0.0, 0.0) for o in engine.generate(prompts, params)]
    else:

        def run():
            return asyncio.run(_clients(server, prompts))

    results = []

    def timed():
        out = run()
        results.append(out)
        return out

    benchmark.pedantic(timed, rounds=3, iterations=1, warmup_rounds=1)
    bad = sum(text != want for out in results for (text, _, _), want in zip(out, expected, strict=True))
    benchmark.extra_info["lost_or_garbled"] = bad
    if impl == "lmfs-server":
        lat = sorted(t for out in results for (_, _, t) in out)
        ttft = sorted(f for out in results for (_, f, _) in out)
        pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
        benchmark.extra_info.update(
            latency_p50_s=statistics.median(lat),
            latency_p99_s=pick(lat, 0.99),
            first_chunk_p50_s=statistics.median(ttft),
            first_chunk_p99_s=pick(ttft, 0.99),
        )
    assert bad == 0
