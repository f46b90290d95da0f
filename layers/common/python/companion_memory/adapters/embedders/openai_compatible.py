"""Any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint (OpenAI, Azure-style proxies, vLLM, Ollama,
text-embeddings-inference, LiteLLM...).

Batches are cut by item count and by an estimate of tokens (characters / 4: no tokenizer is shipped),
each request has a timeout, and 429/5xx/timeouts are retried with exponential backoff (honouring
Retry-After up to a cap) before the call fails as DependencyUnavailable. Uses ``httpx2``, the HTTP
client the layer already ships for the MCP SDK.
"""

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx2

from companion_memory.errors import CompanionMemoryError, DependencyUnavailable, ValidationFailed

CHARS_PER_TOKEN = 4
MAX_RETRY_AFTER_S = 10.0


class OpenAICompatibleEmbedder:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimensions: int,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_batch_items: int = 64,
        max_batch_tokens: int = 8_000,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        send_dimensions: bool = False,
        client: httpx2.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_batch_items < 1 or max_batch_tokens < 1 or max_retries < 0 or dimensions < 1:
            raise ValueError("batch limits and dimensions must be positive, retries not negative")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx2.Client(timeout=timeout_s)
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = headers
        self._model = model
        self._dimensions = dimensions
        self._max_items = max_batch_items
        self._max_tokens = max_batch_tokens
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._send_dimensions = send_dimensions
        self._sleep = sleep

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}:{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        for text in texts:
            if not text.strip():
                raise ValidationFailed("cannot embed an empty text")
        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            vectors.extend(self._request(batch))
        return vectors

    def _batches(self, texts: Sequence[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        tokens = 0
        for text in texts:
            estimate = len(text) // CHARS_PER_TOKEN + 1
            if batch and (len(batch) >= self._max_items or tokens + estimate > self._max_tokens):
                yield batch
                batch, tokens = [], 0
            batch.append(text)
            tokens += estimate
        if batch:
            yield batch

    def _request(self, batch: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self._model, "input": batch, "encoding_format": "float"}
        if self._send_dimensions:
            body["dimensions"] = self._dimensions
        attempt = 0
        while True:
            try:
                response = self._client.post(self._url, json=body, headers=self._headers)
            except httpx2.TimeoutException as exc:
                failure: Exception = exc
                wait = self._backoff(attempt, None)
            except httpx2.TransportError as exc:
                failure = exc
                wait = self._backoff(attempt, None)
            else:
                if response.status_code == 200:
                    return self._vectors(response, len(batch))
                if response.status_code != 429 and response.status_code < 500:
                    raise _client_error(response)
                failure = DependencyUnavailable(f"embedding endpoint answered {response.status_code}")
                wait = self._backoff(attempt, response.headers.get("retry-after"))
            if attempt >= self._max_retries:
                raise DependencyUnavailable(
                    "the embedding service is unavailable; retry shortly", details={"attempts": attempt + 1}
                ) from failure
            self._sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        return min(self._backoff_s * float(2**attempt), MAX_RETRY_AFTER_S)

    def _vectors(self, response: httpx2.Response, expected: int) -> list[list[float]]:
        try:
            data = response.json()["data"]
            ordered = sorted(data, key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in ordered]
        except (ValueError, KeyError, TypeError) as exc:
            raise DependencyUnavailable("the embedding service returned an unexpected answer") from exc
        if len(vectors) != expected or any(len(v) != self._dimensions for v in vectors):
            raise DependencyUnavailable(
                "the embedding service returned vectors of the wrong count or size",
                details={"expected_dimensions": self._dimensions},
            )
        return vectors


def _client_error(response: httpx2.Response) -> CompanionMemoryError:
    if response.status_code in (400, 413, 422):
        return ValidationFailed(
            "the embedding service rejected the text", details={"status": response.status_code}
        )
    # 401/403/404: a wrong key, model or URL is configuration, not the caller's input or a blip.
    return CompanionMemoryError(
        "the embedding endpoint refused the request", details={"status": response.status_code}
    )
