"""The OpenAI REST API, as far as scelmo uses it: ``POST /v1/embeddings`` and ``/v1/chat/completions``.

Answers follow the real JSON formats (list object with ``data[i].embedding`` / ``index`` /
``usage``; base64-encoded little-endian float32 when the client asks for
``encoding_format="base64"``, which the ``openai`` client does by default; ``chat.completion``
objects; ``{"error": {...}}`` bodies for errors).
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from typing import Any

import numpy as np

from ._base import FakeService, Request


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
    """

    embeddings_path = "/v1/embeddings"
    chat_path = "/v1/chat/completions"

    def __init__(
        self,
        *,
        dim: int = 16,
        api_key: str = "sk-test",
        max_delay: float = 0.0,
        empty_for: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.dim = dim
        self.api_key = api_key
        self.max_delay = max_delay
        self.empty_for = empty_for
        self._random = random.Random(0)

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

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
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, self.dim)[:dim]
            value: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        # The API does not promise data in input order; `index` is what counts.
        data.reverse()
        tokens = sum(len(t.split()) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return 200, {"x-request-id": f"req_{len(self.requests)}"}, payload

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
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
