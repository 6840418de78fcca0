"""The OpenAI REST API, as far as scelmo uses it: ``POST /v1/embeddings`` and ``/v1/chat/completions``.

Answers follow the real JSON formats (list object with ``data[i].embedding`` / ``index`` /
``usage``; base64-encoded little-endian float32 when the client asks for
``encoding_format="base64"``, which the ``openai`` client does by default; ``chat.completion``
objects; ``{"error": {...}}`` bodies for errors).

It can also be told to answer badly, the way a broken or misconfigured OpenAI-compatible
server does (:meth:`OpenAIService.answer_badly`): NaN or all-zero vectors, vectors of another
size, vectors of several sizes, an empty ``data`` list, broken JSON, an HTML page with status 200.
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from ._base import FakeService, Raw, Request

_HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Proxy login</body></html>"


def fake_embedding(text: str, dim: int = 16) -> np.ndarray:
    """A deterministic unit vector for ``text`` (what the fake embeddings endpoint answers)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def fake_chat_answer(prompt: str) -> str:
    """What the fake chat endpoint answers to a user message."""
    return f"Summary for the prompt <{prompt}>"


class OpenAIService(FakeService):
    """Fake OpenAI API on 127.0.0.1; ``url`` is the ``base_url`` for the client (``.../v1``).

    Parameters
    ----------
    dim
        Embedding size.
    api_key
        The only key accepted (others get 401).
    max_delay
        Each answer is delayed by a random time up to this (seconds), so concurrent requests
        finish out of order.
    empty_for
        Chat prompts containing one of these strings get an empty answer.
    delay
        Every answer is delayed by this many seconds (a slow server).
    """

    #: What :meth:`answer_badly` can send instead of a good embeddings answer.
    BAD_ANSWERS = ("nan", "zero", "size", "ragged", "empty", "garbage", "html", "floats")

    embeddings_path = "/v1/embeddings"
    chat_path = "/v1/chat/completions"

    def __init__(
        self,
        *,
        dim: int = 16,
        api_key: str = "sk-test",
        max_delay: float = 0.0,
        empty_for: tuple[str, ...] = (),
        delay: float = 0.0,
    ) -> None:
        super().__init__(delay=delay)
        self._bad: deque[tuple[str, int | None]] = deque()
        self._bad_chat: deque[str] = deque()
        self._bad_lock = threading.Lock()
        self.dim = dim
        self.api_key = api_key
        self.max_delay = max_delay
        self.empty_for = empty_for
        self._random = random.Random(0)

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def answer_badly(self, kind: str, *, times: int = 1, dim: int | None = None, chat: bool = False) -> None:
        """The next ``times`` embeddings answers (after the scripted faults) are bad, with status 200.

        With ``chat=True``, the next chat answers instead (``"garbage"`` and ``"html"`` only).

        ``kind``: ``"nan"`` (one vector has a NaN), ``"zero"`` (one vector is all zeros),
        ``"size"`` (every vector has ``dim`` values), ``"ragged"`` (the last vector is one
        value short), ``"empty"`` (``data`` is ``[]``), ``"garbage"`` (truncated JSON),
        ``"html"`` (an HTML page, ``text/html``), ``"floats"`` (float lists although base64 was
        asked for: allowed by some servers, and correct).
        """
        if kind not in self.BAD_ANSWERS or (chat and kind not in ("garbage", "html")):
            raise ValueError(f"unknown bad answer {kind!r}; one of {self.BAD_ANSWERS}")
        with self._bad_lock:
            if chat:
                self._bad_chat.extend([kind] * times)
            else:
                self._bad.extend([(kind, dim)] * times)

    def reset(self) -> None:
        super().reset()
        with self._bad_lock:
            self._bad.clear()
            self._bad_chat.clear()

    def error_body(self, status: int, message: str) -> Any:
        kind = {429: ("requests", "rate_limit_exceeded"), 401: ("invalid_request_error", "invalid_api_key")}
        error_type, code = kind.get(status, ("server_error", None))
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def handle(self, request: Request) -> tuple[int, dict[str, str], Any]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, self.error_body(401, "Incorrect API key provided.")
        if self.max_delay:
            time.sleep(self._random.uniform(0, self.max_delay))
        body = request.json()
        if request.path == self.embeddings_path:
            return self._embeddings(body)
        if request.path == self.chat_path:
            return self._chat(body)
        return 404, {}, self.error_body(404, f"Unknown path {request.path}")

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        texts = body["input"]
        if isinstance(texts, str):
            texts = [texts]
        if not texts or any(not t for t in texts):
            return 400, {}, self.error_body(400, "'$.input' is invalid.")
        dim = body.get("dimensions") or self.dim
        encoding = body.get("encoding_format", "float")
        with self._bad_lock:
            bad, bad_dim = self._bad.popleft() if self._bad else (None, None)
        if bad == "garbage":
            return 200, {}, Raw(b'{"object": "list", "data": [{"object": "embedding", "index": 0, "embe')
        if bad == "html":
            return 200, {}, Raw(_HTML_PAGE, "text/html; charset=utf-8")
        if bad == "floats":
            encoding = "float"
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, self.dim)[:dim]
            if bad == "size":
                assert bad_dim is not None, "answer_badly('size') needs dim="
                vector = fake_embedding(text, bad_dim)
            elif bad == "nan" and index == 0:
                vector = vector.copy()
                vector[1] = np.nan
            elif bad == "zero" and index == 0:
                vector = np.zeros_like(vector)
            elif bad == "ragged" and index == len(texts) - 1:
                vector = vector[:-1]
            value: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        # The API does not promise data in input order; `index` is what counts.
        data.reverse()
        if bad == "empty":
            data = []
        tokens = sum(len(t.split()) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return 200, {"x-request-id": f"req_{len(self.requests)}"}, payload

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        with self._bad_lock:
            bad = self._bad_chat.popleft() if self._bad_chat else None
        if bad == "garbage":
            return 200, {}, Raw(b'{"id": "chatcmpl-1", "object": "chat.completion", "choi')
        if bad == "html":
            return 200, {}, Raw(_HTML_PAGE, "text/html; charset=utf-8")
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        content = "" if any(s in user for s in self.empty_for) else fake_chat_answer(user)
        payload = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len(user.split()),
                "completion_tokens": len(content.split()),
                "total_tokens": len(user.split()) + len(content.split()),
            },
            "system_fingerprint": "fp_test",
        }
        return 200, {}, payload
