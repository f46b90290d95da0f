"""Composition root: the only place that names concrete adapters.

Everything is built lazily on first use and cached for the life of the process (a warm Lambda
sandbox), so a handler pays only for what it touches: each builder imports its adapters itself, and a
function that never builds a client never imports its library (measured: eager imports here cost
/health ~0.5 s of init). After a SnapStart restore the cache is dropped, because connections captured
in the snapshot are dead.
"""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

from companion_memory.config import (
    AwsSettings,
    HealthSettings,
    IdentitySettings,
    KmsSettings,
    MemoriesSettings,
    PostgresSettings,
    RateLimitSettings,
    RedisSettings,
    settings_for,
)

if TYPE_CHECKING:
    from uuid import UUID

    import redis

    from companion_memory.adapters.postgres import Database
    from companion_memory.adapters.postgres_directory import PostgresCompanionDirectory
    from companion_memory.adapters.postgres_erasure import PostgresErasure
    from companion_memory.adapters.postgres_identity import PostgresIdentityStore
    from companion_memory.adapters.postgres_upkeep import PostgresSessionLedger
    from companion_memory.adapters.signing_keys import SecretsManagerPublicKeys, SecretsManagerSigningKeys
    from companion_memory.auth.authenticator import Authenticator
    from companion_memory.config import EmbeddingSettings
    from companion_memory.domain.analytics import AnalyticsService
    from companion_memory.domain.companion_transfer import CompanionTransfer
    from companion_memory.domain.companions import CompanionService
    from companion_memory.domain.envelope import EnvelopeCipher
    from companion_memory.domain.erasure import ErasureService
    from companion_memory.domain.health import HealthService
    from companion_memory.domain.identity import IdentityService
    from companion_memory.domain.limits import RequestGuard
    from companion_memory.domain.memory import MemoryService
    from companion_memory.domain.memory_access import MemoryAccess
    from companion_memory.domain.memory_import import MemoryImporter
    from companion_memory.domain.reembed import Reembedder
    from companion_memory.domain.sessions import SessionService
    from companion_memory.domain.upkeep import UpkeepService
    from companion_memory.mcp.access import McpServices
    from companion_memory.ports import DependencyProbe, Embedder, TenantDataStore


@cache
def database() -> Database:
    from companion_memory.adapters import aws
    from companion_memory.adapters.postgres import Database, conninfo_from

    settings = settings_for(PostgresSettings)
    secret = None
    if settings.database_url is None and settings.db_secret_arn is not None:
        secret = aws.secret_json(settings.db_secret_arn)
    return Database(conninfo_from(settings, secret), settings)


@cache
def redis_connection() -> redis.Redis:
    from companion_memory.adapters import aws
    from companion_memory.adapters.redis import redis_client

    settings = settings_for(RedisSettings)
    credentials = aws.secret_json(settings.redis_secret_arn) if settings.redis_secret_arn else None
    return redis_client(settings, credentials)


@cache
def aws_client(service: str) -> Any:
    from companion_memory.adapters import aws

    return aws.client(service, settings_for(AwsSettings))


@cache
def health_service() -> HealthService:
    from companion_memory.adapters.dynamodb import DynamoDbProbe
    from companion_memory.adapters.postgres import PostgresProbe
    from companion_memory.adapters.redis import RedisProbe
    from companion_memory.domain.health import HealthService

    settings = settings_for(HealthSettings)
    probes: list[DependencyProbe] = [
        # Clients are built inside each probe: a secret that cannot be read is that dependency
        # being down, not a failed health check.
        PostgresProbe(database),
        RedisProbe(redis_connection),
        DynamoDbProbe(lambda: aws_client("dynamodb"), settings.sessions_table),
    ]
    return HealthService(probes, timeout_s=settings.health_check_timeout_s)


@cache
def session_service() -> SessionService:
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore
    from companion_memory.domain.sessions import SessionService

    store = DynamoDbSessionStore(aws_client("dynamodb"), settings_for(AwsSettings).sessions_table)
    return SessionService(store, session_ledger(), SystemClock())


@cache
def session_ledger() -> PostgresSessionLedger:
    """Session statistics in PostgreSQL: the concurrent-session limit, companion_users, session_log."""
    from companion_memory.adapters.postgres_upkeep import PostgresSessionLedger

    return PostgresSessionLedger(database())


@cache
def upkeep_service() -> UpkeepService:
    """The cleanup schedule: expired sessions folded and deleted, memories expired, decayed, archived,
    consolidated and capped, forgotten ones purged."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.dynamodb_sessions import DynamoDbSessionStore
    from companion_memory.adapters.postgres_upkeep import PostgresUpkeepStore
    from companion_memory.domain.upkeep import UpkeepService

    sessions = DynamoDbSessionStore(aws_client("dynamodb"), settings_for(AwsSettings).sessions_table)
    return UpkeepService(
        PostgresUpkeepStore(database()),
        companion_directory(),
        sessions,
        session_ledger(),
        SystemClock(),
        purges=tenant_data_stores(),
    )


@cache
def companion_directory() -> PostgresCompanionDirectory:
    """The companions the schedules walk (cleanup upkeep and analytics): ids across tenants, each one's
    owner and config read in its own context."""
    from companion_memory.adapters.postgres_directory import PostgresCompanionDirectory

    return PostgresCompanionDirectory(database())


@cache
def embedder() -> Embedder:
    """The configured embedding model. Adapters are imported here, not at module load, so a function
    pays (boto3, httpx2, the local model) only for the provider it uses, and only when it embeds."""
    from companion_memory.config import EmbeddingSettings

    return embedder_for(settings_for(EmbeddingSettings))


def embedder_for(settings: EmbeddingSettings) -> Embedder:
    """An embedder built from ``settings``, uncached: `companion-memory reembed` names the model it rolls
    out, which is not the configured one until the deploy that switches to it."""
    provider = settings.embedding_provider
    if provider == "bedrock":
        from companion_memory.adapters.embedders.bedrock import BedrockTitanEmbedder, bedrock_client

        client = bedrock_client(settings.aws_region, settings.embedding_timeout_s)
        return BedrockTitanEmbedder(
            client,
            model=settings.bedrock_embedding_model,
            dimensions=settings.embedding_dimensions or 1024,
            max_concurrency=settings.embedding_max_concurrency,
        )
    if provider == "openai":
        from companion_memory.adapters.embedders.openai_compatible import OpenAICompatibleEmbedder

        base_url, model, dimensions = (
            settings.openai_base_url,
            settings.openai_embedding_model,
            settings.embedding_dimensions,
        )
        if not (base_url and model and dimensions):
            needed = "OPENAI_BASE_URL, OPENAI_EMBEDDING_MODEL and EMBEDDING_DIMENSIONS"
            raise ValueError(f"EMBEDDING_PROVIDER=openai needs {needed}")
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if api_key is None and settings.openai_api_key_secret_arn:
            from companion_memory.adapters import aws

            api_key = str(aws.secret_json(settings.openai_api_key_secret_arn)["api_key"])
        return OpenAICompatibleEmbedder(
            base_url=base_url,
            model=model,
            dimensions=dimensions,
            api_key=api_key,
            timeout_s=settings.embedding_timeout_s,
            max_batch_items=settings.openai_max_batch_items,
            max_batch_tokens=settings.openai_max_batch_tokens,
            max_retries=settings.openai_max_retries,
            send_dimensions=settings.openai_send_dimensions,
        )
    if provider == "local":
        from companion_memory.adapters.embedders.local import LocalE5Embedder

        return LocalE5Embedder()
    # Hashing vectors know no meaning: never in a deployed stage, whatever the environment says.
    if settings.stage not in ("local", "test"):
        raise ValueError(f"EMBEDDING_PROVIDER=hash is for tests only, not for stage {settings.stage!r}")
    from companion_memory.adapters.embedders.hashing import HashingEmbedder

    return HashingEmbedder(settings.embedding_dimensions or 256)


@cache
def identity_store() -> PostgresIdentityStore:
    from companion_memory.adapters.postgres_identity import PostgresIdentityStore

    return PostgresIdentityStore(database())


@cache
def signing_keys() -> SecretsManagerSigningKeys:
    """The private key set: only the issuer (the auth function, the CLI) has it."""
    from companion_memory.adapters.signing_keys import SecretsManagerSigningKeys

    settings = settings_for(IdentitySettings)
    if not settings.signing_keys_secret_arn or not settings.public_jwks_secret_arn:
        raise ValueError("issuing tokens needs SIGNING_KEYS_SECRET_ARN and PUBLIC_JWKS_SECRET_ARN")
    return SecretsManagerSigningKeys(
        aws_client("secretsmanager"),
        settings.signing_keys_secret_arn,
        public_secret_id=settings.public_jwks_secret_arn,
        cache_s=settings.signing_keys_cache_s,
        monotonic=time.monotonic,
    )


@cache
def public_keys() -> SecretsManagerPublicKeys:
    """The public JWKS that verifies user tokens: all a verifier (authorizer, MCP) can read."""
    from companion_memory.adapters.signing_keys import SecretsManagerPublicKeys

    settings = settings_for(IdentitySettings)
    if not settings.public_jwks_secret_arn:
        raise ValueError("PUBLIC_JWKS_SECRET_ARN is not set")
    return SecretsManagerPublicKeys(
        aws_client("secretsmanager"),
        settings.public_jwks_secret_arn,
        cache_s=settings.signing_keys_cache_s,
        monotonic=time.monotonic,
    )


@cache
def identity_service() -> IdentityService:
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.domain.identity import IdentityService

    settings = settings_for(IdentitySettings)
    keys = signing_keys() if settings.signing_keys_secret_arn else None
    issuer = settings.issuer if settings.public_base_url else ""
    audience = settings.mcp_resource if settings.public_base_url else ""
    return IdentityService(identity_store(), SystemClock(), keys, issuer=issuer, audience=audience)


@cache
def companion_service() -> CompanionService:
    """The companion lifecycle: list, versions, rollback, pause/resume/archive, a companion's users."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_companions import PostgresCompanionStore
    from companion_memory.domain.companions import CompanionService

    return CompanionService(PostgresCompanionStore(database()), identity_store(), SystemClock())


@cache
def authenticator() -> Authenticator:
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.auth.authenticator import Authenticator

    settings = settings_for(IdentitySettings)
    return Authenticator(
        identity_store(),
        SystemClock().now,
        lambda: public_keys().load(),
        issuer=settings.issuer,
        audience=settings.mcp_resource,
        cache_s=settings.auth_cache_s,
        monotonic=time.monotonic,
    )


@cache
def content_cipher() -> EnvelopeCipher:
    """Seals strict companions' content; also provisions (``provision_data_key``) and shreds data keys."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.kms_envelope import KmsDataKeys, PostgresWrappedKeys
    from companion_memory.domain.envelope import EnvelopeCipher

    settings = settings_for(KmsSettings)
    if settings.kms_key_id is None:
        raise ValueError("KMS_KEY_ID is not set")
    return EnvelopeCipher(
        KmsDataKeys(aws_client("kms"), settings.kms_key_id),
        PostgresWrappedKeys(database()),
        SystemClock(),
        ttl_s=settings.data_key_cache_ttl_s,
        max_uses=settings.data_key_max_uses,
    )


@cache
def rate_limiter() -> RequestGuard:
    """``admit(companion_id, user_id, companion_config)`` before each request of a companion's user."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.redis_limits import RedisRateLimiter
    from companion_memory.domain.limits import RequestGuard

    limiter = RedisRateLimiter(redis_connection(), SystemClock())
    return RequestGuard(limiter, settings_for(RateLimitSettings).rate_limit_failure_mode)


@cache
def memory_service() -> MemoryService:
    """Memories on PostgreSQL with the configured embedder; strict companions' content is sealed by the
    envelope cipher when a KMS key is configured (without one, storing for a strict companion fails)."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_memory import PostgresMemoryStore
    from companion_memory.domain.memory import MemoryService

    cipher = content_cipher() if settings_for(KmsSettings).kms_key_id is not None else None
    return MemoryService(PostgresMemoryStore(database()), embedder(), SystemClock(), cipher=cipher)


@cache
def memory_access() -> MemoryAccess:
    """Principal, scopes, user permissions and rate limit: the check of every memory request, REST and MCP."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_activity import PostgresActivityRecorder
    from companion_memory.domain.memory_access import MemoryAccess

    settings = settings_for(MemoriesSettings)
    return MemoryAccess(
        identity_store(),
        rate_limiter(),
        cache_s=settings.auth_cache_s,
        monotonic=time.monotonic,
        activity=PostgresActivityRecorder(database()),
        now=SystemClock().now,
    )


@cache
def analytics_service() -> AnalyticsService:
    """Time series, engagement, leaderboard, health and the auto-pause schedule (functions/analytics)."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_analytics import PostgresAnalyticsStore
    from companion_memory.domain.analytics import AnalyticsService

    return AnalyticsService(PostgresAnalyticsStore(database()), SystemClock(), companion_directory())


@cache
def memory_importer() -> MemoryImporter:
    """Bulk import (idempotent by the line's client key) and export of JSON Lines."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_memory_imports import PostgresImportKeys
    from companion_memory.domain.memory_import import MemoryImporter

    return MemoryImporter(memory_service(), PostgresImportKeys(database()), SystemClock())


@cache
def postgres_erasure() -> PostgresErasure:
    """Erasure in PostgreSQL: a tenant data store, and the ledger of tombstones and erasure audit entries."""
    from companion_memory.adapters.postgres_erasure import PostgresErasure

    return PostgresErasure(database())


@cache
def tenant_data_stores() -> list[TenantDataStore]:
    """Every store that holds data of a companion's users: erasing a user and deleting a companion reach each
    one (``ports.TenantDataStore``). A store that starts holding user data joins this list."""
    from companion_memory.adapters.dynamodb_erasure import DynamoDbErasure
    from companion_memory.adapters.redis_erasure import RedisErasure

    # DynamoDB first, PostgreSQL last: a session fold (cleanup or a restart) reads DynamoDB before it writes
    # session_log and companion_users, so once the sessions are gone no new fold can start re-creating the
    # rows the PostgreSQL step deletes; and a purge cut short leaves PostgreSQL rows, which is what the
    # cleanup's sweep of pending purges looks for (deleted_companions_with_data, 0012).
    return [
        DynamoDbErasure(aws_client("dynamodb"), settings_for(AwsSettings).sessions_table),
        RedisErasure(redis_connection()),
        postgres_erasure(),
    ]


@cache
def erasure_service() -> ErasureService:
    """User erasure and companion deletion (tombstone, crypto-shred, purge of every tenant data store)."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.domain.erasure import ErasureService

    shredder = content_cipher() if settings_for(KmsSettings).kms_key_id is not None else None
    return ErasureService(identity_store(), postgres_erasure(), tenant_data_stores(), SystemClock(), shredder)


@cache
def companion_transfer() -> CompanionTransfer:
    """Companion export and import (JSON Lines) over the memory service, its bulk importer and identity."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_companion_transfer import PostgresTransferStore
    from companion_memory.domain.companion_transfer import CompanionTransfer

    return CompanionTransfer(
        identity_service(),
        identity_store(),
        memory_service(),
        memory_importer(),
        PostgresTransferStore(database()),
        SystemClock(),
    )


def reembedder(
    owner_conninfo: str, embedding: EmbeddingSettings, companion_id: UUID | None = None
) -> Reembedder:
    """The re-embedding job (`companion-memory reembed`): every tenant's memories through the owner's narrow
    reembed role, vectors from the model ``embedding`` names; strict companions' content is opened by the
    envelope cipher when a KMS key is configured, and skipped (reported) otherwise."""
    from companion_memory.adapters.clock import SystemClock
    from companion_memory.adapters.postgres_reembed import PostgresReembedStore
    from companion_memory.domain.reembed import Reembedder

    cipher = content_cipher() if settings_for(KmsSettings).kms_key_id is not None else None
    return Reembedder(
        PostgresReembedStore(owner_conninfo),
        embedder_for(embedding),
        SystemClock(),
        cipher=cipher,
        companion_id=companion_id,
    )


@cache
def mcp_services() -> McpServices:
    """What the MCP function uses: the authenticator, the memory access check (the REST routes' own), the
    memory service and the session store. Imported here so no other function pays for it."""
    from companion_memory.mcp.access import McpServices

    return McpServices(
        authenticator=authenticator(),
        access=memory_access(),
        memory=memory_service(),
        sessions=session_service(),
    )


def reset() -> None:
    """Forget every cached client (after a SnapStart restore, between tests, before a CLI exits); the
    database pool's worker threads are stopped, not just forgotten."""
    if database.cache_info().currsize:
        database().close()
    for built in _BUILT:
        built.cache_clear()


_BUILT = (
    database,
    redis_connection,
    aws_client,
    health_service,
    session_service,
    session_ledger,
    upkeep_service,
    companion_directory,
    embedder,
    identity_store,
    signing_keys,
    public_keys,
    identity_service,
    companion_service,
    authenticator,
    content_cipher,
    rate_limiter,
    memory_service,
    memory_access,
    analytics_service,
    memory_importer,
    mcp_services,
    postgres_erasure,
    tenant_data_stores,
    erasure_service,
    companion_transfer,
)


def _register_snapstart_hook() -> None:
    try:
        from snapshot_restore_py import register_after_restore  # only present in the Lambda runtime
    except ImportError:
        return
    register_after_restore(reset)


_register_snapstart_hook()
