"""Embedder adapters without a network: hashing, the offline local model, Bedrock through botocore's
Stubber (a real client whose HTTP layer is replaced), OpenAI-compatible through httpx2's MockTransport."""

import io
import json
import math
import threading
from collections.abc import Callable
from typing import Any

import boto3
import httpx2
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from companion_memory import wiring
from companion_memory.adapters.embedders.bedrock import TITAN_V2, BedrockTitanEmbedder
from companion_memory.adapters.embedders.hashing import HashingEmbedder
from companion_memory.adapters.embedders.local import LocalE5Embedder
from companion_memory.adapters.embedders.openai_compatible import OpenAICompatibleEmbedder
from companion_memory.config import EmbeddingSettings, settings_for
from companion_memory.errors import CompanionMemoryError, DependencyUnavailable, ValidationFailed
from companion_memory.ports import Embedder


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- hashing -----------------------------------------------------------------------------------------------


def test_hashing_vectors_are_deterministic_unit_length_and_of_the_configured_size() -> None:
    embedder: Embedder = HashingEmbedder(64)

    first, again = embedder.embed_documents(["Maya loves spicy ramen", "Maya loves spicy ramen"])

    assert first == again
    assert len(first) == 64 == embedder.dimensions
    assert math.isclose(math.sqrt(sum(v * v for v in first)), 1.0)
    assert embedder.model_id == "hash:words-1-2:64"


def test_hashing_ranks_texts_that_share_words_above_unrelated_ones() -> None:
    embedder = HashingEmbedder(256)
    query = embedder.embed_query("spicy ramen")

    near, far = embedder.embed_documents(["Maya loves spicy ramen", "Daniel works at a bridge firm"])

    assert cosine(query, near) > cosine(query, far)


def test_hashing_embeds_text_without_words_as_the_zero_vector() -> None:
    assert HashingEmbedder(16).embed_query("?!") == [0.0] * 16


# --- local model (offline) ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_embedder() -> LocalE5Embedder:
    return LocalE5Embedder()


def test_local_model_loads_and_embeds_with_the_hub_offline_and_no_sockets(
    monkeypatch: pytest.MonkeyPatch, local_embedder: LocalE5Embedder
) -> None:
    # Given the hub switched off (sockets are already disabled for unit tests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    # When a fresh embedder loads its model and embeds
    vector = LocalE5Embedder().embed_query("what does she like to eat?")

    # Then it works from the package alone
    assert len(vector) == 384
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-3)
    assert local_embedder.model_id == "local:multilingual-e5-small-q4:384"


def test_local_model_matches_a_paraphrase_better_than_an_unrelated_memory(
    local_embedder: LocalE5Embedder,
) -> None:
    query = local_embedder.embed_query("What does she do for a living?")

    job, pet = local_embedder.embed_documents(
        [
            "Maya works as a paediatric nurse at St Bride's hospital.",
            "Maya has a ginger cat called Marmalade.",
        ]
    )

    assert cosine(query, job) > cosine(query, pet)


def test_local_model_embeds_a_batch_in_order_and_an_empty_batch_as_nothing(
    local_embedder: LocalE5Embedder,
) -> None:
    texts = ["first memory", "second memory", "third memory"]

    batch = local_embedder.embed_documents(texts)
    one_by_one = [local_embedder.embed_documents([t])[0] for t in texts]

    assert all(cosine(a, b) > 0.999 for a, b in zip(batch, one_by_one, strict=True))
    assert local_embedder.embed_documents([]) == []


# --- Bedrock Titan V2 --------------------------------------------------------------------------------------


def titan_client() -> Any:
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


def titan_answer(vector: list[float]) -> dict[str, Any]:
    body = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    return {"body": io.BytesIO(body), "contentType": "application/json"}


def test_bedrock_sends_titan_v2_a_normalised_request_of_the_configured_size() -> None:
    # Given a client that expects exactly Titan V2's request shape
    client = titan_client()
    embedder = BedrockTitanEmbedder(client, dimensions=256)
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            titan_answer([0.5] * 256),
            {
                "modelId": TITAN_V2,
                "body": json.dumps({"inputText": "hello there", "dimensions": 256, "normalize": True}),
                "contentType": "application/json",
                "accept": "application/json",
            },
        )

        # When a query is embedded
        vector = embedder.embed_query("hello there")

        # Then the vector comes back and every expected call was made
        stub.assert_no_pending_responses()
    assert vector == [0.5] * 256
    assert embedder.model_id == "bedrock:amazon.titan-embed-text-v2:0:256"


def test_bedrock_batch_returns_vectors_in_input_order_with_bounded_calls_in_flight() -> None:
    # Given a client that answers each text with a vector naming it and counts concurrent calls
    texts = [f"memory {i}" for i in range(12)]
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    class CountingClient:
        def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
                if in_flight == 3:
                    release.set()
            # Hold each call until the pool has had the chance to fill up (or a second has passed).
            release.wait(timeout=1)
            index = int(json.loads(kwargs["body"])["inputText"].split()[1])
            with lock:
                in_flight -= 1
            return titan_answer([float(index)] * 256)

    embedder = BedrockTitanEmbedder(CountingClient(), dimensions=256, max_concurrency=3)

    # When the batch is embedded
    vectors = embedder.embed_documents(texts)

    # Then the order is kept and no more than three calls ran at once
    assert [v[0] for v in vectors] == [float(i) for i in range(12)]
    assert peak == 3


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ServiceUnavailableException", "ModelTimeoutException"]
)
def test_bedrock_transient_errors_become_retryable_dependency_errors(code: str) -> None:
    client = titan_client()
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code=code, http_status_code=429)

        with pytest.raises(DependencyUnavailable) as caught:
            BedrockTitanEmbedder(client).embed_query("hello")

    assert caught.value.retryable
    assert caught.value.details == {"reason": code}


def test_bedrock_read_timeout_becomes_a_dependency_error() -> None:
    # Given a real client whose request times out before it is sent anywhere
    client = titan_client()

    def time_out(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.bedrock-runtime.InvokeModel", time_out)

    # When / Then
    with pytest.raises(DependencyUnavailable, match="did not answer in time"):
        BedrockTitanEmbedder(client).embed_query("hello")


def test_bedrock_rejected_text_is_a_validation_error_and_access_denied_is_not_retryable() -> None:
    client = titan_client()
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="ValidationException", http_status_code=400)
        stub.add_client_error(
            "invoke_model", service_error_code="AccessDeniedException", http_status_code=403
        )
        embedder = BedrockTitanEmbedder(client)

        with pytest.raises(ValidationFailed):
            embedder.embed_query("hello")
        with pytest.raises(CompanionMemoryError) as denied:
            embedder.embed_query("hello")

    assert type(denied.value) is CompanionMemoryError
    assert not denied.value.retryable


def test_bedrock_refuses_empty_or_oversized_text_and_unsupported_sizes_before_calling() -> None:
    class NoCalls:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            raise AssertionError("no call expected")

    embedder = BedrockTitanEmbedder(NoCalls())

    with pytest.raises(ValidationFailed):
        embedder.embed_documents(["fine", "  "])
    with pytest.raises(ValidationFailed):
        embedder.embed_query("x" * 50_001)
    with pytest.raises(ValueError, match="256, 512, 1024"):
        BedrockTitanEmbedder(NoCalls(), dimensions=768)


def test_bedrock_answer_of_the_wrong_size_is_a_dependency_error() -> None:
    client = titan_client()
    with Stubber(client) as stub:
        stub.add_response("invoke_model", titan_answer([0.1] * 512))

        with pytest.raises(DependencyUnavailable, match="unexpected answer"):
            BedrockTitanEmbedder(client, dimensions=1024).embed_query("hello")


# --- OpenAI-compatible -------------------------------------------------------------------------------------

Handler = Callable[[httpx2.Request], httpx2.Response]


def vectors_for(request: httpx2.Request, dims: int = 4) -> httpx2.Response:
    body = json.loads(request.content)
    # Out of order on purpose: the adapter must sort by index.
    data = [
        {"index": i, "embedding": [float(i)] * dims, "object": "embedding"} for i in range(len(body["input"]))
    ]
    return httpx2.Response(200, json={"object": "list", "data": list(reversed(data)), "model": body["model"]})


def openai_embedder(
    handler: Handler, sleeps: list[float] | None = None, **options: Any
) -> OpenAICompatibleEmbedder:
    defaults: dict[str, Any] = {"base_url": "http://embeddings.test/v1/", "model": "m", "dimensions": 4}
    return OpenAICompatibleEmbedder(
        **(defaults | options),
        client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        sleep=(sleeps.append if sleeps is not None else lambda _: None),
    )


def test_openai_posts_to_the_embeddings_path_with_the_key_and_sorts_answers_by_index() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return vectors_for(request)

    vectors = openai_embedder(handler, api_key="sk-test").embed_documents(["a", "b", "c"])

    assert vectors == [[0.0] * 4, [1.0] * 4, [2.0] * 4]
    assert str(seen[0].url) == "http://embeddings.test/v1/embeddings"
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert json.loads(seen[0].content) == {"model": "m", "input": ["a", "b", "c"], "encoding_format": "float"}


def test_openai_cuts_batches_by_item_count_and_by_estimated_tokens() -> None:
    sizes: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sizes.append(len(json.loads(request.content)["input"]))
        return vectors_for(request)

    # Given five short texts with at most two per request, then texts of ~100 tokens with a 250-token budget
    openai_embedder(handler, max_batch_items=2).embed_documents(["a"] * 5)
    openai_embedder(handler, max_batch_tokens=250).embed_documents(["x" * 400] * 5)

    assert sizes == [2, 2, 1, 2, 2, 1]


def test_openai_retries_429_and_5xx_with_backoff_then_succeeds() -> None:
    answers = iter([429, 503, 200])
    sleeps: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        status = next(answers)
        return vectors_for(request) if status == 200 else httpx2.Response(status)

    vector = openai_embedder(handler, sleeps, backoff_s=0.5).embed_query("hello")

    assert vector == [0.0] * 4
    assert sleeps == [0.5, 1.0]


def test_openai_honours_retry_after_up_to_a_cap() -> None:
    answers = iter([("2", 429), ("3600", 429), (None, 200)])
    sleeps: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        retry_after, status = next(answers)
        if status == 200:
            return vectors_for(request)
        return httpx2.Response(status, headers={"Retry-After": retry_after} if retry_after else {})

    openai_embedder(handler, sleeps).embed_query("hello")

    assert sleeps == [2.0, 10.0]


def test_openai_gives_up_after_the_retries_with_a_retryable_error() -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        raise httpx2.ReadTimeout("slow", request=request)

    with pytest.raises(DependencyUnavailable) as caught:
        openai_embedder(handler, max_retries=2).embed_query("hello")

    assert calls == 3
    assert caught.value.retryable
    assert caught.value.details == {"attempts": 3}


@pytest.mark.parametrize(
    ("status", "error"), [(400, ValidationFailed), (422, ValidationFailed), (401, CompanionMemoryError)]
)
def test_openai_client_errors_are_not_retried(status: int, error: type[CompanionMemoryError]) -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return httpx2.Response(status, json={"error": {"message": "nope"}})

    with pytest.raises(error) as caught:
        openai_embedder(handler).embed_query("hello")

    assert calls == 1
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [{"index": 0, "embedding": [1.0, 2.0]}]},
        {"data": []},
        {"unexpected": True},
        ["not", "an", "object"],
    ],
)
def test_openai_malformed_or_wrong_sized_answers_are_dependency_errors(answer: object) -> None:
    embedder = openai_embedder(lambda _: httpx2.Response(200, json=answer))

    with pytest.raises(DependencyUnavailable):
        embedder.embed_query("hello")


def test_openai_sends_dimensions_only_when_asked_and_names_model_and_size() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        return vectors_for(request)

    embedder = openai_embedder(handler, model="text-embedding-3-small", send_dimensions=True)
    embedder.embed_query("hello")

    assert bodies[0]["dimensions"] == 4
    assert embedder.model_id == "openai:text-embedding-3-small:4"


def test_openai_refuses_an_empty_text_without_a_request() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("no request expected")

    with pytest.raises(ValidationFailed):
        openai_embedder(handler).embed_documents(["ok", ""])


# --- wiring ------------------------------------------------------------------------------------------------


@pytest.fixture
def embedding_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Embedder]:
    def build(**env: str) -> Embedder:
        for name in ("EMBEDDING_PROVIDER", "EMBEDDING_DIMENSIONS", "STAGE", "OPENAI_BASE_URL",
                     "OPENAI_EMBEDDING_MODEL", "OPENAI_API_KEY"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings_for.cache_clear()
        wiring.embedder.cache_clear()
        return wiring.embedder()

    yield build
    settings_for.cache_clear()
    wiring.embedder.cache_clear()


def test_wiring_defaults_to_bedrock_titan_v2_at_1024_dimensions(
    embedding_env: Callable[..., Embedder],
) -> None:
    # Static credentials keep botocore from asking the instance metadata service (a socket) for some.
    embedder = embedding_env(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")

    assert embedder.model_id == "bedrock:amazon.titan-embed-text-v2:0:1024"


def test_wiring_builds_each_provider_from_its_settings(embedding_env: Callable[..., Embedder]) -> None:
    assert embedding_env(EMBEDDING_PROVIDER="local").model_id == "local:multilingual-e5-small-q4:384"
    assert embedding_env(EMBEDDING_PROVIDER="hash", STAGE="local").model_id == "hash:words-1-2:256"
    openai = embedding_env(
        EMBEDDING_PROVIDER="openai", OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_EMBEDDING_MODEL="e5",
        EMBEDDING_DIMENSIONS="384", OPENAI_API_KEY="k",
    )  # fmt: skip
    assert openai.model_id == "openai:e5:384"


def test_wiring_never_builds_the_hash_embedder_for_a_deployed_stage(
    embedding_env: Callable[..., Embedder],
) -> None:
    with pytest.raises(ValueError, match="tests only"):
        embedding_env(EMBEDDING_PROVIDER="hash", STAGE="prod")


def test_wiring_refuses_an_incomplete_openai_configuration(embedding_env: Callable[..., Embedder]) -> None:
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        embedding_env(EMBEDDING_PROVIDER="openai", OPENAI_EMBEDDING_MODEL="e5")


def test_settings_reject_an_unknown_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_PROVIDER", "word2vec")

    with pytest.raises(ValueError, match=r"(?i)embedding_provider"):
        EmbeddingSettings()
