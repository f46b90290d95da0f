"""Settings, one pydantic model per function, built from mixins.

Each model is parsed once per process (``settings_for``) from the environment the template sets.
Nothing else in the code base reads ``os.environ``.
"""

from functools import cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Base(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    stage: str = Field(default="local", description="Deployment stage (dev, prod, local)")
    service_name: str = Field(default="companion-memory", alias="POWERTOOLS_SERVICE_NAME")


class PostgresSettings(_Base):
    """Aurora through RDS Proxy in AWS (credentials from Secrets Manager); a plain URL locally."""

    database_url: SecretStr | None = Field(default=None, description="libpq URL; wins over the secret")
    db_secret_arn: str | None = Field(default=None, description="Secrets Manager secret with the app role")
    db_host: str | None = Field(default=None, description="RDS Proxy (or cluster) endpoint")
    db_port: int = 5432
    db_name: str = "companion_memory"
    db_sslmode: str = Field(default="require", description="libpq sslmode; the local stack sets disable")
    db_connect_timeout_s: int = Field(default=3, ge=1, le=30)
    db_statement_timeout_ms: int = Field(default=5_000, ge=100)
    db_pool_max_size: int = Field(default=2, ge=1, le=20)


class RedisSettings(_Base):
    redis_url: SecretStr | None = Field(default=None, description="redis:// or rediss:// URL")
    redis_secret_arn: str | None = Field(default=None, description="secret holding the AUTH password")
    redis_host: str | None = None
    redis_port: int = 6379
    redis_timeout_s: float = Field(default=0.5, gt=0, le=10)


class AwsSettings(_Base):
    aws_region: str = Field(default="us-east-1", alias="AWS_REGION")
    sessions_table: str = "companion-memory-sessions"
    aws_timeout_s: float = Field(default=2.0, gt=0, le=30)


class KmsSettings(AwsSettings):
    """Envelope encryption of strict companions' content (adapters/kms_envelope.py)."""

    kms_key_id: str | None = Field(default=None, description="CMK (ARN, id or alias) wrapping data keys")
    # A plaintext data key lives in memory for at most this long and this many seal/open operations;
    # then it is zeroised and unwrapped again, which also notices a key shredded by another process.
    data_key_cache_ttl_s: float = Field(default=300, gt=0, le=3600)
    data_key_max_uses: int = Field(default=10_000, ge=1)


class RateLimitSettings(_Base):
    # open: a Redis outage lets requests through (logged, metric RateLimiterFailOpen); closed: they
    # fail with dependency_unavailable. See docs/security.md, "Rate limits and quotas".
    rate_limit_failure_mode: Literal["open", "closed"] = "open"


class HealthSettings(PostgresSettings, RedisSettings, AwsSettings):
    health_check_timeout_s: float = Field(default=1.5, gt=0, le=10)


class McpSettings(PostgresSettings, RedisSettings, AwsSettings):
    # Host/Origin validation guards against DNS rebinding; the template passes the function URL
    # and API hostnames, the local gateway its own 127.0.0.1:<port>.
    mcp_allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:*", "localhost:*"])
    mcp_allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*"]
    )


class MemoriesSettings(PostgresSettings, RedisSettings, KmsSettings, RateLimitSettings):
    """The REST memory function (functions/memories); embedding settings are read where it embeds."""

    auth_cache_s: float = Field(default=15, ge=0, le=30, description="Companion/user permission cache")


class SessionCleanupSettings(PostgresSettings, RedisSettings, AwsSettings):
    """The cleanup schedule (functions/session_cleanup): PostgreSQL and the sessions table; Redis only to
    finish the pending purges of deleted companions (their counters)."""


class MigrateSettings(PostgresSettings):
    """Migrations run as the schema owner, never as the application role."""

    database_owner_url: SecretStr | None = Field(default=None, description="owner libpq URL; wins")
    db_owner_secret_arn: str | None = Field(default=None, description="secret of the owner role")
    app_db_secret_arn: str | None = Field(
        default=None, description="secret whose username/password the application role is given"
    )


class IdentitySettings(PostgresSettings, AwsSettings):
    """What authenticating and issuing need: the signing key secret and the public names of the service."""

    signing_keys_secret_arn: str | None = Field(
        default=None, description="Secret with the private JWT key set (the issuer, the auth function, only)"
    )
    public_jwks_secret_arn: str | None = Field(
        default=None, description="Secret with the public JWKS: all that verifiers may read"
    )
    signing_keys_cache_s: float = Field(
        default=300,
        ge=0,
        le=3600,
        description="Key set cache: rotations reach every sandbox within this time",
    )
    # Tokens name the service (iss) and the MCP resource (aud = <base>/mcp) by this URL, whichever host (API
    # or function URL) a request arrives on. Locally the stack's API_URL plays this part.
    public_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("public_base_url", "api_url"),
        description="https://... base URL clients use (custom domain or the API URL)",
    )
    auth_cache_s: float = Field(default=15, ge=0, le=30, description="Key/companion/user status cache")

    @property
    def issuer(self) -> str:
        if not self.public_base_url:
            raise ValueError("PUBLIC_BASE_URL is not set: tokens need the service's public URL")
        return self.public_base_url.rstrip("/")

    @property
    def mcp_resource(self) -> str:
        return f"{self.issuer}/mcp"


class EmbeddingSettings(AwsSettings):
    """Which embedding model vectors come from. The template defaults to Bedrock (Titan Text Embeddings V2);
    the local stack to the offline local model; `hash` is for unit tests and must be named explicitly."""

    embedding_provider: Literal["bedrock", "openai", "local", "hash"] = "bedrock"
    embedding_dimensions: int | None = Field(
        default=None, ge=8, le=4096, description="Titan V2: 256, 512 or 1024 (default 1024); openai: required"
    )
    embedding_timeout_s: float = Field(default=10.0, gt=0, le=60)
    embedding_max_concurrency: int = Field(default=4, ge=1, le=16, description="Bedrock calls in flight")
    bedrock_embedding_model: str = "amazon.titan-embed-text-v2:0"
    openai_base_url: str | None = Field(default=None, description="e.g. https://api.openai.com/v1")
    openai_embedding_model: str | None = None
    openai_api_key: SecretStr | None = Field(default=None, description="wins over the secret")
    openai_api_key_secret_arn: str | None = Field(default=None, description='secret JSON {"api_key": "..."}')
    openai_send_dimensions: bool = Field(default=False, description="send `dimensions` (text-embedding-3)")
    openai_max_batch_items: int = Field(default=64, ge=1, le=2048)
    openai_max_batch_tokens: int = Field(default=8_000, ge=1)
    openai_max_retries: int = Field(default=3, ge=0, le=10)


@cache
def settings_for[S: _Base](model: type[S]) -> S:
    return model()
