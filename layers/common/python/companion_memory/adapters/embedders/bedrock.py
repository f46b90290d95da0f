"""Amazon Bedrock Titan Text Embeddings V2 through ``bedrock-runtime`` InvokeModel.

Titan embeds one text per call (there is no batch API), so a batch is spread over a small thread pool:
at most ``max_concurrency`` calls are in flight at once, which keeps a Lambda sandbox's sockets and the
account's Bedrock quota in check. Vectors are requested normalised, so cosine is a dot product.
"""

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from companion_memory.errors import CompanionMemoryError, DependencyUnavailable, ValidationFailed

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
# Titan V2 takes up to 8,192 tokens or 50,000 characters per text.
MAX_CHARACTERS = 50_000

# Errors Bedrock documents as transient: worth a retry by the caller after a backoff.
_TRANSIENT = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "InternalServerException",
    "ServiceQuotaExceededException",
}


def bedrock_client(region: str, timeout_s: float) -> Any:
    """A bedrock-runtime client with short timeouts; botocore's standard mode retries throttling once."""
    config = Config(
        connect_timeout=min(timeout_s, 3.0),
        read_timeout=timeout_s,
        retries={"mode": "standard", "max_attempts": 2},
        max_pool_connections=16,
    )
    return boto3.client("bedrock-runtime", region_name=region, config=config)


class BedrockTitanEmbedder:
    def __init__(
        self, client: Any, *, model: str = TITAN_V2, dimensions: int = 1024, max_concurrency: int = 4
    ) -> None:
        if model == TITAN_V2 and dimensions not in TITAN_V2_DIMENSIONS:
            raise ValueError(f"Titan V2 supports {TITAN_V2_DIMENSIONS} dimensions, not {dimensions}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._client = client
        self._model = model
        self._dimensions = dimensions
        self._max_concurrency = max_concurrency

    @property
    def model_id(self) -> str:
        return f"bedrock:{self._model}:{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        for text in texts:
            self._check(text)
        if len(texts) <= 1:
            return [self._embed(text) for text in texts]
        with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(texts))) as pool:
            futures = [pool.submit(self._embed, text) for text in texts]
            try:
                return [future.result() for future in futures]
            except BaseException:
                # One failure fails the batch: don't keep paying for calls whose results are discarded.
                for future in futures:
                    future.cancel()
                raise

    def _check(self, text: str) -> None:
        if not text.strip():
            raise ValidationFailed("cannot embed an empty text")
        if len(text) > MAX_CHARACTERS:
            raise ValidationFailed(
                f"text too long to embed ({len(text)} characters, at most {MAX_CHARACTERS})"
            )

    def _embed(self, text: str) -> list[float]:
        self._check(text)
        body = json.dumps({"inputText": text, "dimensions": self._dimensions, "normalize": True})
        try:
            response = self._client.invoke_model(
                modelId=self._model, body=body, contentType="application/json", accept="application/json"
            )
            payload = json.loads(response["body"].read())
        except ClientError as exc:
            raise _mapped(exc) from exc
        except (ReadTimeoutError, ConnectionError) as exc:
            raise DependencyUnavailable("the embedding service did not answer in time") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the embedding service could not be reached") from exc
        vector = payload.get("embedding") if isinstance(payload, dict) else None
        if not isinstance(vector, list) or len(vector) != self._dimensions:
            raise DependencyUnavailable("the embedding service returned an unexpected answer")
        return [float(x) for x in vector]


def _mapped(exc: ClientError) -> CompanionMemoryError:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in _TRANSIENT:
        return DependencyUnavailable("the embedding service is busy; retry shortly", details={"reason": code})
    if code == "ValidationException":
        return ValidationFailed("the embedding service rejected the text")
    # Access denied, model not enabled, wrong region: configuration, not the caller's input or a blip.
    return CompanionMemoryError("the embedding model is not accessible", details={"reason": code})
