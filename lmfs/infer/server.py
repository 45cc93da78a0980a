"""An OpenAI-compatible HTTP server over the engine: ``/v1/completions``, ``/v1/chat/completions`` (streamed as
server-sent events with ``"stream": true``), ``/v1/models``, ``/health`` and a chat page at ``/``.

Concurrency: one engine loop thread (:meth:`lmfs.infer.Engine.start_loop`) runs the continuous batch; every HTTP
request submits to it and waits on an asyncio queue fed from the engine thread (``call_soon_threadsafe``). A
client that disconnects mid-stream cancels its request, which frees its slot at the next engine step.

Limits (:class:`Limits`) answer with OpenAI-style errors ``{"error": {"message", "type", "param", "code"}}``:
400 for malformed JSON, bad fields, ``max_tokens`` over the limit or a prompt longer than allowed; 404 for a
model name the server does not serve; 429 when the queue is full.
"""

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lmfs.infer.engine import Engine, Request
from lmfs.infer.sampling import SamplingParams

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass
class Limits:
    """Request limits: ``max_tokens`` per request (also the default when a request gives none),
    ``max_prompt_tokens``, ``max_queue`` = requests running + waiting before new ones get 429."""

    max_tokens: int = 512
    max_prompt_tokens: int = 1536
    max_queue: int = 64


class ChatTemplate:
    """Messages → prompt text. ``chatml`` is SmolLM2's (``<|im_start|>role\\ncontent<|im_end|>\\n`` …, a default
    system message when none is given, generation starts after ``<|im_start|>assistant\\n``, stops at
    ``<|im_end|>``); ``plain`` is "role: content" lines for models trained on plain text."""

    def __init__(self, kind: str = "chatml", default_system: str | None = SMOLLM2_SYSTEM) -> None:
        if kind not in ("chatml", "plain"):
            raise ValueError(f"chat template must be 'chatml' or 'plain', got {kind!r}")
        self.kind, self.default_system = kind, default_system

    @property
    def stop(self) -> str:
        return "<|im_end|>" if self.kind == "chatml" else "\nuser:"

    def render(self, messages: list[dict[str, str]]) -> str:
        if self.kind == "chatml":
            out = []
            if self.default_system and (not messages or messages[0]["role"] != "system"):
                out.append(f"<|im_start|>system\n{self.default_system}<|im_end|>\n")
            out += [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
            return "".join(out) + "<|im_start|>assistant\n"
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


class APIError(Exception):
    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param=None, code=None
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _field(body: dict, name: str, kind, default, check=None, what: str = ""):
    value = body.get(name, default)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise APIError(400, f"'{name}' must be {what or kind.__name__}, got {value!r}", param=name)
    if check is not None and not check(value):
        raise APIError(400, f"'{name}' must be {what}, got {value!r}", param=name)
    return value


class Server:
    """The app's state: the engine, the model's name, tokenizer, chat template and limits."""

    def __init__(
        self,
        engine: Engine,
        model_name: str,
        *,
        limits: Limits | None = None,
        chat_template: ChatTemplate | None = None,
        stop_token_ids: tuple[int, ...] = (),
    ) -> None:
        if engine.tokenizer is None:
            raise ValueError("the server needs an engine with a tokenizer")
        self.engine, self.model_name = engine, model_name
        self.limits = limits or Limits()
        self.template = chat_template or ChatTemplate()
        self.stop_token_ids = tuple(stop_token_ids)
        self.started = time.time()
        self._relays: dict[int, Relay] = {}

    def relay(self, loop: asyncio.AbstractEventLoop) -> "Relay":
        """The event-loop relay for ``loop`` (one per loop, shared by its requests)."""
        r = self._relays.get(id(loop))
        if r is None or r.loop is not loop:
            r = self._relays[id(loop)] = Relay(loop)
        return r

    # ---- request parsing
    def sampling(self, body: dict, chat: bool) -> tuple[SamplingParams, bool]:
        model = body.get("model")
        if model is not None and model != self.model_name:
            raise APIError(
                404,
                f"model {model!r} does not exist; this server serves {self.model_name!r}",
                param="model",
                code="model_not_found",
            )
        max_tokens = _field(
            body, "max_tokens", int, self.limits.max_tokens, lambda v: v >= 0, "an integer >= 0"
        )
        if chat and "max_completion_tokens" in body:
            max_tokens = _field(
                body, "max_completion_tokens", int, max_tokens, lambda v: v >= 0, "an integer >= 0"
            )
        if max_tokens > self.limits.max_tokens:
            raise APIError(
                400,
                f"max_tokens {max_tokens} exceeds this server's limit of {self.limits.max_tokens}",
                param="max_tokens",
            )
        n = _field(body, "n", int, 1)
        if n != 1:
            raise APIError(400, "only n = 1 is supported", param="n")
        stop = body.get("stop")
        if stop is None:
            stop = []
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
            raise APIError(
                400,
                f"'stop' must be a string or a list of up to 4 non-empty strings, got {stop!r}",
                param="stop",
            )
        if chat:
            stop = [*stop, self.template.stop]
        try:
            params = SamplingParams(
                temperature=_field(
                    body, "temperature", float, 1.0, lambda v: 0 <= v <= 2, "a number in [0, 2]"
                ),
                top_p=_field(body, "top_p", float, 1.0, lambda v: 0 < v <= 1, "a number in (0, 1]"),
                top_k=_field(body, "top_k", int, 0, lambda v: v >= 0, "an integer >= 0"),
                max_tokens=max_tokens,
                stop=tuple(stop),
                stop_token_ids=self.stop_token_ids,
                seed=_field(body, "seed", int, None),
            )
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        stream = _field(body, "stream", bool, False)
        return params, stream

    def prompt_ids(self, body: dict, chat: bool) -> list[int]:
        if chat:
            messages = body.get("messages")
            ok = (
                isinstance(messages, list)
                and messages
                and all(
                    isinstance(m, dict)
                    and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)
                    for m in messages
                )
            )
            if not ok:
                raise APIError(
                    400,
                    "'messages' must be a non-empty list of {role, content} objects with string values",
                    param="messages",
                )
            text = self.template.render(messages)
            ids = self.engine.tokenizer.encode(text)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if isinstance(prompt, str) and prompt:
                ids = self.engine.tokenizer.encode(prompt)
            elif (
                isinstance(prompt, list)
                and prompt
                and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
            ):
                ids = list(prompt)
            else:
                raise APIError(
                    400, "'prompt' must be a non-empty string or a list of token ids", param="prompt"
                )
        limit = min(self.limits.max_prompt_tokens, self.engine.max_seq)
        if len(ids) > limit:
            raise APIError(
                400,
                f"the prompt has {len(ids)} tokens; this server accepts at most {limit}",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        return ids

    def admit(self) -> None:
        busy = self.engine.num_running + self.engine.num_waiting
        if busy >= self.limits.max_queue:
            raise APIError(
                429,
                f"the server is busy ({busy} requests queued or running, limit "
                f"{self.limits.max_queue}); retry later",
                type="rate_limit_error",
            )


class Relay:
    """Hands engine events to the event loop once per burst instead of once per token: the engine thread appends
    ``(queue, item)`` to an outbox and schedules one ``call_soon_threadsafe`` wake-up that drains it, so a step
    that completes a token for 32 streams costs one loop wake-up, not 32."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._outbox: list = []
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, queue: asyncio.Queue, item) -> None:
        with self._lock:
            self._outbox.append((queue, item))
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch, self._outbox, self._scheduled = self._outbox, [], False
        for queue, item in batch:
            queue.put_nowait(item)


def create_app(server: Server):
    """The FastAPI app. Starts the engine loop on startup and stops it on shutdown."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi import Request as HTTPRequest
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

    engine = server.engine

    @asynccontextmanager
    async def lifespan(app):
        engine.start_loop()
        try:
            yield
        finally:
            engine.stop_loop()

    app = FastAPI(title="lmfs", lifespan=lifespan)
    app.state.server = server

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": server.model_name,
            "running": engine.num_running,
            "waiting": engine.num_waiting,
            "max_batch": engine.max_batch,
            "max_seq": engine.max_seq,
        }

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": server.model_name,
                    "object": "model",
                    "created": int(server.started),
                    "owned_by": "lmfs",
                }
            ],
        }

    @app.get("/", response_class=HTMLResponse)
    async def page():
        html = resources.files("lmfs.infer").joinpath("chat.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", server.model_name))

    async def _body(request: HTTPRequest) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        return body

    async def _handle(request: HTTPRequest, chat: bool):
        body = await _body(request)
        params, stream = server.sampling(body, chat)
        ids = server.prompt_ids(body, chat)
        server.admit()
        queue: asyncio.Queue = asyncio.Queue()
        relay = server.relay(asyncio.get_running_loop())

        def on_event(req: Request, piece: str, done: bool) -> None:
            relay.put(queue, (piece, done))

        try:
            req = engine.submit(ids, params, on_event=on_event)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"

        def usage() -> dict:
            n = len(req.token_ids)
            return {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}

        def finish() -> str:
            return req.finish_reason if req.finish_reason in ("stop", "length") else "stop"

        if not stream:
            try:
                while True:
                    _, done = await queue.get()
                    if done:
                        break
            except asyncio.CancelledError:
                engine.cancel(req)
                raise
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish()}
            if chat:
                choice["message"] = {"role": "assistant", "content": req.text}
            else:
                choice["text"], choice["logprobs"] = req.text, None
            return {
                "id": rid,
                "object": kind,
                "created": created,
                "model": server.model_name,
                "choices": [choice],
                "usage": usage(),
            }

        def chunk(piece: str | None, reason: str | None, first: bool = False) -> str:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
                if piece:
                    delta["content"] = piece
                c = {"index": 0, "delta": delta, "finish_reason": reason}
                obj = "chat.completion.chunk"
            else:
                c = {"index": 0, "text": piece or "", "finish_reason": reason, "logprobs": None}
                obj = "text_completion"
            doc = {"id": rid, "object": obj, "created": created, "model": server.model_name, "choices": [c]}
            if reason is not None:
                doc["usage"] = usage()
            return f"data: {json.dumps(doc)}\n\n"

        async def events():
            try:
                if chat:
                    yield chunk(None, None, first=True)
                while True:
                    if queue.empty():
                        try:
                            item = await asyncio.wait_for(queue.get(), timeout=1.0)
                        except TimeoutError:
                            if await request.is_disconnected():
                                return
                            continue
                    else:
                        item = queue.get_nowait()
                    piece, done = item
                    while not done and not queue.empty():  # a client that fell behind gets one merged chunk
                        more, done = queue.get_nowait()
                        piece += more
                    if piece:
                        yield chunk(piece, None)
                    if done:
                        yield chunk(None, finish())
                        yield "data: [DONE]\n\n"
                        return
            finally:
                if not req.finished:  # the client went away: free the slot
                    engine.cancel(req)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/completions")
    async def completions(request: HTTPRequest):
        return await _handle(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest):
        return await _handle(request, chat=True)

    return app
