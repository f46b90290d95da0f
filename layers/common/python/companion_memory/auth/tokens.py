"""User access tokens: compact JWS (JWT) signed with an asymmetric key addressed by ``kid``.

Decisions:

- **Algorithm: ES256** (ECDSA P-256, SHA-256): the asymmetric JOSE algorithm every client library, OAuth/MCP
  tool and AWS KMS (``ECC_NIST_P256``) supports, so moving the private key into KMS later changes neither the
  tokens nor the JWKS. It is also the faster verify here: ~120 us per ``verify`` against ~145 us for EdDSA
  (OpenSSL's P-256 is hand-optimised; measured on x86_64, median of 2,000). EdDSA (Ed25519) is accepted by the
  verifier for a later migration (deterministic signatures, no nonce to get wrong) but is not the default: its
  JOSE name is in flux (RFC 9864 deprecates ``EdDSA`` for ``Ed25519``) and fewer relying parties accept it.
  Each key is bound to one algorithm; a token's ``alg`` must equal it *and* be in the caller's pinned list.
- **Audience**: ``aud`` is one string, compared exactly: the canonical URL of the protected resource (the MCP
  endpoint, e.g. ``https://memory.example.com/mcp``), as the MCP authorization spec (RFC 8707 resource
  indicators) requires and ``/.well-known/oauth-protected-resource`` advertises. The companion is bound by the
  signed ``cid`` claim: a caller that addresses a companion (REST path ``/companions/{id}``) passes
  ``companion_id=``, and a token of another companion is rejected like a token for another resource.
- **Clock**: ``now`` is injected. PyJWT reads the wall clock, so its time checks are off and ours use ``now``
  with a small leeway (default 30 s). Lifetimes are bounded: 60 s to 24 h.
- **Failures**: every rejection raises :class:`InvalidToken` (an ``Unauthorized``) with the client-facing
  message ``"invalid token"``; the precise cause is in ``.reason``, for logs only (never the token text).

Only a dict lookup ever touches ``kid``. Key storage and rotation (Secrets Manager) live in an adapter.
"""

import binascii
import json
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, NoReturn, cast, get_args

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

# The scope names and lifetime bounds live in a module without the JWT stack; re-exported (__all__).
from companion_memory.auth.grants import (
    ALL_SCOPES,
    MAX_TTL_S,
    MIN_TTL_S,
    SCOPE_ADMIN,
    SCOPE_MEMORIES_DELETE,
    SCOPE_MEMORIES_READ,
    SCOPE_MEMORIES_WRITE,
)
from companion_memory.errors import Forbidden, Unauthorized, ValidationFailed

Algorithm = Literal["ES256", "EdDSA"]
SUPPORTED_ALGORITHMS: Final[frozenset[str]] = frozenset(get_args(Algorithm))
DEFAULT_ALGORITHM: Final[Algorithm] = "ES256"

DEFAULT_LEEWAY_S: Final = 30
MAX_LEEWAY_S: Final = 300
# Our tokens are ~500 bytes; the cap bounds what an unauthenticated caller makes us parse before any crypto.
MAX_TOKEN_BYTES: Final = 8 * 1024
MAX_ID_LENGTH: Final = 256
MAX_KID_LENGTH: Final = 128
TOKEN_TYPE: Final = "JWT"  # noqa: S105 (a header value, not a secret)
INVALID_TOKEN_MESSAGE: Final = "invalid token"  # noqa: S105

# An allow-list, not a deny-list: anything that could make the verifier fetch or trust a key from the token
# (jku, jwk, x5u, x5c), change how the payload is read (b64 via crit) or that we do not understand is refused.
_ALLOWED_HEADERS: Final = frozenset({"alg", "kid", "typ"})
_NAMED_FORBIDDEN_HEADERS: Final = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64"})
_REQUIRED_CLAIMS: Final = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "cid", "scope"]
_B64URL_ALPHABET: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

PublicKey = ec.EllipticCurvePublicKey | Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | Ed25519PrivateKey


class InvalidToken(Unauthorized):
    """A token that must not be trusted. ``reason`` is for logs; clients only ever see ``invalid token``."""

    def __init__(self, reason: str) -> None:
        super().__init__(INVALID_TOKEN_MESSAGE)
        self.reason = reason


def _reject(reason: str) -> NoReturn:
    raise InvalidToken(reason)


# ------------------------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    algorithm: Algorithm
    public_key: PublicKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        if _algorithm_of(self.public_key) != self.algorithm:
            raise ValidationFailed("Key type does not match its algorithm", details={"kid": self.kid})

    @classmethod
    def from_pem(cls, kid: str, pem: bytes | str) -> "VerificationKey":
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as error:
            raise ValidationFailed("Not a PEM public key", details={"kid": kid}) from error
        if not isinstance(key, ec.EllipticCurvePublicKey | Ed25519PublicKey):
            raise ValidationFailed("Unsupported key type: use EC P-256 or Ed25519", details={"kid": kid})
        return cls(kid, _algorithm_of(key), key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> "VerificationKey":
        if "d" in jwk:
            # A published key set carrying private material is a leak, not a key to trust.
            raise ValidationFailed("A verification JWK must not contain private key material")
        kid, algorithm, key = _load_jwk(jwk, operation="verify")
        if not isinstance(key, ec.EllipticCurvePublicKey | Ed25519PublicKey):
            raise ValidationFailed("Expected a public key", details={"kid": kid})
        return cls(kid, algorithm, key)

    def to_jwk(self) -> dict[str, str]:
        """The public JWK with only public members, ``kid``, ``alg`` and ``use``."""
        if isinstance(self.public_key, ec.EllipticCurvePublicKey):
            full = ECAlgorithm.to_jwk(self.public_key, as_dict=True)
            public = {name: full[name] for name in ("kty", "crv", "x", "y")}
        else:
            full = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
            public = {name: full[name] for name in ("kty", "crv", "x")}
        return {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        if _algorithm_of(self.private_key) != self.algorithm:
            raise ValidationFailed("Key type does not match its algorithm", details={"kid": self.kid})

    @classmethod
    def from_pem(cls, kid: str, pem: bytes | str) -> "SigningKey":
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise ValidationFailed("Not an unencrypted PEM private key", details={"kid": kid}) from error
        if not isinstance(key, ec.EllipticCurvePrivateKey | Ed25519PrivateKey):
            raise ValidationFailed("Unsupported key type: use EC P-256 or Ed25519", details={"kid": kid})
        return cls(kid, _algorithm_of(key), key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> "SigningKey":
        kid, algorithm, key = _load_jwk(jwk, operation="sign")
        if not isinstance(key, ec.EllipticCurvePrivateKey | Ed25519PrivateKey):
            raise ValidationFailed("Expected a private key", details={"kid": kid})
        return cls(kid, algorithm, key)

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: for the key store (Secrets Manager encrypts it at rest with KMS)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.kid, self.algorithm, self.private_key.public_key())


def generate_signing_key(algorithm: Algorithm = DEFAULT_ALGORITHM) -> SigningKey:
    """A fresh key with a random 128-bit ``kid`` (a kid says nothing about when or where it was made)."""
    private_key: PrivateKey
    if algorithm == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    else:
        private_key = Ed25519PrivateKey.generate()
    return SigningKey(secrets.token_urlsafe(16), algorithm, private_key)


class VerificationKeys:
    """Keys by ``kid``: the current one and, while rotating, the previous (grace period) and the next."""

    __slots__ = ("_by_kid",)

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        by_kid: dict[str, VerificationKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise ValidationFailed("Duplicate kid in key set", details={"kid": key.kid})
            by_kid[key.kid] = key
        self._by_kid = by_kid

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> "VerificationKeys":
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise ValidationFailed("A JWKS is an object with a 'keys' list")
        return cls(VerificationKey.from_jwk(key) for key in keys)

    def get(self, kid: str) -> VerificationKey | None:
        return self._by_kid.get(kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._by_kid)

    def __iter__(self) -> Iterator[VerificationKey]:
        return iter(self._by_kid.values())

    def __len__(self) -> int:
        return len(self._by_kid)


def public_jwks(keys: Iterable[VerificationKey]) -> dict[str, list[dict[str, str]]]:
    """The document served at ``/.well-known/jwks.json``: public members only."""
    return {"keys": [key.to_jwk() for key in keys]}


def _algorithm_of(key: PublicKey | PrivateKey) -> Algorithm:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise ValidationFailed("Unsupported EC curve: use P-256")
    if isinstance(key, Ed25519PublicKey | Ed25519PrivateKey):
        return "EdDSA"
    raise ValidationFailed("Unsupported key type: use EC P-256 or Ed25519")


def _check_kid(kid: object) -> None:
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH or not kid.isprintable():
        raise ValidationFailed(f"A kid is a printable string of 1 to {MAX_KID_LENGTH} characters")


def _load_jwk(jwk: Mapping[str, Any], *, operation: Literal["sign", "verify"]) -> tuple[str, Algorithm, Any]:
    kid = jwk.get("kid")
    _check_kid(kid)
    kid = cast(str, kid)
    if jwk.get("use", "sig") != "sig":
        raise ValidationFailed("Key is not for signatures (use)", details={"kid": kid})
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or operation not in key_ops):
        raise ValidationFailed(f"Key does not allow '{operation}' (key_ops)", details={"kid": kid})
    kty, crv = jwk.get("kty"), jwk.get("crv")
    algorithm: Algorithm
    try:
        key: Any
        if kty == "EC" and crv == "P-256":
            algorithm, key = "ES256", ECAlgorithm.from_jwk(dict(jwk))
        elif kty == "OKP" and crv == "Ed25519":
            algorithm, key = "EdDSA", OKPAlgorithm.from_jwk(dict(jwk))
        else:
            raise ValidationFailed("Unsupported key type: use EC P-256 or OKP Ed25519", details={"kid": kid})
    except (jwt.InvalidKeyError, ValueError, TypeError) as error:
        raise ValidationFailed("Malformed JWK", details={"kid": kid}) from error
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        raise ValidationFailed("JWK 'alg' does not match its key type", details={"kid": kid})
    return kid, algorithm, key


# ------------------------------------------------------------------------------------------------------------
# Claims


class TokenClaims(BaseModel):
    """What a verified token says. Only :func:`verify` builds one from a token."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    audience: str
    subject: str = Field(description="The end user's id within the companion")
    companion_id: str
    owner_id: str | None = None
    scopes: frozenset[str]
    token_id: str
    key_id: str
    issued_at: datetime
    not_before: datetime
    expires_at: datetime

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class _WireClaims(BaseModel):
    """The payload as signed. Strict: numbers are integers (not strings or bools), ids are bounded strings."""

    model_config = ConfigDict(extra="ignore", strict=True)

    iss: StrictStr
    aud: StrictStr
    sub: StrictStr = Field(min_length=1, max_length=MAX_ID_LENGTH)
    cid: StrictStr = Field(min_length=1, max_length=MAX_ID_LENGTH)
    oid: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    scope: StrictStr = Field(max_length=1024)
    jti: StrictStr = Field(min_length=1, max_length=MAX_ID_LENGTH)
    exp: StrictInt = Field(ge=0, lt=2**40)
    nbf: StrictInt = Field(ge=0, lt=2**40)
    iat: StrictInt = Field(ge=0, lt=2**40)


def require_scope(claims: TokenClaims, scope: str) -> None:
    """Raise ``Forbidden`` unless the token grants ``scope`` (``admin`` implies nothing: grant each scope)."""
    if scope not in claims.scopes:
        raise Forbidden("The token does not grant this operation", details={"required_scope": scope})


def issue(
    *,
    subject: str,
    companion_id: str,
    scopes: Iterable[str],
    signing_key: SigningKey,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    now: datetime,
    owner_id: str | None = None,
    token_id: str | None = None,
) -> str:
    """A signed token for ``subject`` (a user of ``companion_id``), valid from ``now`` for ``ttl_seconds``."""
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise ValidationFailed("ttl_seconds must be an integer")
    if not MIN_TTL_S <= ttl_seconds <= MAX_TTL_S:
        raise ValidationFailed(
            f"ttl_seconds must be between {MIN_TTL_S} and {MAX_TTL_S}",
            details={"min": MIN_TTL_S, "max": MAX_TTL_S},
        )
    granted = frozenset(scopes)
    unknown = granted - ALL_SCOPES
    if unknown:
        raise ValidationFailed("Unknown scopes", details={"unknown": sorted(unknown)})
    for name, value in (("subject", subject), ("companion_id", companion_id), ("owner_id", owner_id)):
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH):
            raise ValidationFailed(f"{name} must be a string of 1 to {MAX_ID_LENGTH} characters")
    issued_at = _epoch_seconds(now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "cid": companion_id,
        "scope": " ".join(sorted(granted)),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": token_id or secrets.token_urlsafe(16),
    }
    if owner_id is not None:
        payload["oid"] = owner_id
    token = jwt.encode(
        payload,
        signing_key.private_key,
        algorithm=signing_key.algorithm,
        headers={"kid": signing_key.kid, "typ": TOKEN_TYPE},
    )
    if len(token) > MAX_TOKEN_BYTES:
        raise ValidationFailed("The token would be too large: shorten the ids")
    return token


# ------------------------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True, slots=True)
class VerifiedJws:
    """A JWS whose signature and header rules were checked; the payload is still uninterpreted bytes."""

    header: Mapping[str, Any]
    payload: bytes
    key: VerificationKey


class _StrictPyJWT(jwt.PyJWT):
    # PyJWT's documented hook for reading the payload: ours refuses duplicate claim names (RFC 7515 §4 and
    # RFC 8725 §3.9: two parsers reading different values of one claim is a classic bypass).
    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        payload = _strict_json(decoded["payload"], what="payload")
        if not isinstance(payload, dict):
            _reject("payload_not_object")
        return payload


_JWS = jwt.PyJWS()
_JWT = _StrictPyJWT(
    options={
        "require": _REQUIRED_CLAIMS,
        # Time claims are checked against the injected clock below: PyJWT's checks use the wall clock.
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "strict_aud": True,
        "enforce_minimum_key_length": True,
    }
)


def verify_signature(token: object, keys: VerificationKeys, algorithms: Iterable[str]) -> VerifiedJws:
    """Check a compact JWS: size, encoding, header allow-list, pinned ``alg``, ``kid`` in ``keys``, signature.

    No claim is interpreted. :func:`verify` builds on this; the Wycheproof vectors exercise it directly.
    """
    header, key = _checked_header(token, keys, _pinned(algorithms))
    try:
        decoded = _JWS.decode_complete(cast(str, token), key=key.public_key, algorithms=[key.algorithm])
    except (jwt.PyJWTError, ValueError, RecursionError):
        _reject("bad_signature")
    return VerifiedJws(header=header, payload=decoded["payload"], key=key)


def verify(
    token: object,
    *,
    keys: VerificationKeys,
    issuer: str,
    audience: str,
    now: datetime,
    leeway_s: int = DEFAULT_LEEWAY_S,
    companion_id: str | None = None,
    algorithms: Iterable[str] = (DEFAULT_ALGORITHM,),
) -> TokenClaims:
    """The claims of a token we issued, or :class:`InvalidToken`.

    ``companion_id``, when the request addresses one, must equal the token's ``cid``.
    """
    if not 0 <= leeway_s <= MAX_LEEWAY_S:
        raise ValueError(f"leeway_s must be between 0 and {MAX_LEEWAY_S}")
    current = _epoch_seconds(now)
    header, key = _checked_header(token, keys, _pinned(algorithms))
    if header.get("typ") != TOKEN_TYPE:
        _reject("wrong_typ")
    try:
        decoded = _JWT.decode_complete(
            cast(str, token),
            key=key.public_key,
            algorithms=[key.algorithm],
            issuer=issuer,
            audience=audience,
        )
    except jwt.InvalidSignatureError:
        _reject("bad_signature")
    except jwt.MissingRequiredClaimError as error:
        _reject(f"missing_claim:{error.claim}" if error.claim in _REQUIRED_CLAIMS else "missing_claim")
    except jwt.InvalidIssuerError:
        _reject("wrong_issuer")
    except jwt.InvalidAudienceError:
        _reject("wrong_audience")
    except (jwt.PyJWTError, ValueError, RecursionError):
        _reject("malformed")
    try:
        wire = _WireClaims.model_validate(decoded["payload"])
    except ValidationError:
        _reject("malformed_claims")
    # Exact comparisons were done by PyJWT above; repeated here on the typed values as a cheap second lock.
    if wire.iss != issuer:
        _reject("wrong_issuer")
    if wire.aud != audience:
        _reject("wrong_audience")
    if wire.exp <= current - leeway_s:
        _reject("expired")
    if wire.nbf > current + leeway_s:
        _reject("not_yet_valid")
    if wire.iat > current + leeway_s:
        _reject("issued_in_future")
    if not wire.iat <= wire.nbf < wire.exp or wire.exp - wire.iat > MAX_TTL_S:
        _reject("bad_lifetime")
    scopes = frozenset(wire.scope.split())
    if not scopes <= ALL_SCOPES:
        _reject("unknown_scope")
    if companion_id is not None and wire.cid != companion_id:
        _reject("wrong_companion")
    return TokenClaims(
        issuer=wire.iss,
        audience=wire.aud,
        subject=wire.sub,
        companion_id=wire.cid,
        owner_id=wire.oid,
        scopes=scopes,
        token_id=wire.jti,
        key_id=key.kid,
        issued_at=datetime.fromtimestamp(wire.iat, UTC),
        not_before=datetime.fromtimestamp(wire.nbf, UTC),
        expires_at=datetime.fromtimestamp(wire.exp, UTC),
    )


def _pinned(algorithms: Iterable[str]) -> frozenset[str]:
    # The pinned list comes from our configuration, never from a token: a bad entry is a bug, not an attack.
    pinned = frozenset(algorithms)
    if not pinned or not pinned <= SUPPORTED_ALGORITHMS:
        raise ValueError(f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}")
    return pinned


def _checked_header(
    token: object, keys: VerificationKeys, algorithms: frozenset[str]
) -> tuple[dict[str, Any], VerificationKey]:
    if not isinstance(token, str):
        _reject("not_a_string")
    if len(token) > MAX_TOKEN_BYTES:
        _reject("too_large")
    if not token.isascii():
        _reject("not_ascii")
    segments = token.split(".")
    if len(segments) != 3:
        _reject("not_compact_jws")
    raw_header, _, _ = (_b64url_decode(segment) for segment in segments)
    header = _strict_json(raw_header, what="header")
    if not isinstance(header, dict):
        _reject("header_not_object")
    unexpected = header.keys() - _ALLOWED_HEADERS
    if unexpected:
        named = sorted(unexpected & _NAMED_FORBIDDEN_HEADERS)
        _reject(f"forbidden_header:{named[0]}" if named else "unexpected_header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        # Covers none/None/NONE, HS*, RS*, PS*...: only the algorithms we sign with are ever considered.
        _reject("alg_not_allowed")
    kid = header.get("kid")
    if kid is None:
        _reject("missing_kid")
    if not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH:
        _reject("bad_kid")
    key = keys.get(kid)
    if key is None:
        _reject("unknown_kid")
    if key.algorithm != alg:
        _reject("alg_key_mismatch")
    return header, key


def _b64url_decode(segment: str) -> bytes:
    # Strict base64url (RFC 7515 §2): no padding, no foreign characters, canonical trailing bits. A lenient
    # decoder would accept many spellings of one token (malleable tokens, cache-key confusion).
    if len(segment) % 4 == 1 or not _B64URL_ALPHABET.issuperset(segment.encode()):
        _reject("bad_base64url")
    try:
        raw = urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        _reject("bad_base64url")
    if urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        _reject("bad_base64url")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        _reject("duplicate_member")
    return result


def _strict_json(data: bytes, *, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except InvalidToken:
        raise
    except (ValueError, RecursionError):
        _reject(f"{what}_not_json")


def _epoch_seconds(now: datetime) -> int:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


__all__ = [
    "ALL_SCOPES",
    "DEFAULT_ALGORITHM",
    "DEFAULT_LEEWAY_S",
    "MAX_TOKEN_BYTES",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "SCOPE_ADMIN",
    "SCOPE_MEMORIES_DELETE",
    "SCOPE_MEMORIES_READ",
    "SCOPE_MEMORIES_WRITE",
    "SUPPORTED_ALGORITHMS",
    "InvalidToken",
    "SigningKey",
    "TokenClaims",
    "VerificationKey",
    "VerificationKeys",
    "VerifiedJws",
    "generate_signing_key",
    "issue",
    "public_jwks",
    "require_scope",
    "verify",
    "verify_signature",
]
