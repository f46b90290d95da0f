"""Behaviour of ``companion_memory.auth.tokens`` for honest callers: issuing, keys, JWKS, scopes, bounds."""

import json
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from companion_memory.auth.tokens import (
    MAX_TTL_S,
    MIN_TTL_S,
    SCOPE_ADMIN,
    SCOPE_MEMORIES_DELETE,
    SCOPE_MEMORIES_READ,
    SCOPE_MEMORIES_WRITE,
    InvalidToken,
    SigningKey,
    TokenClaims,
    VerificationKey,
    VerificationKeys,
    generate_signing_key,
    issue,
    public_jwks,
    require_scope,
    verify,
)
from companion_memory.errors import Forbidden, Unauthorized, ValidationFailed

ISSUER = "https://memory.example.com"
AUDIENCE = "https://memory.example.com/mcp"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = generate_signing_key()
KEYS = VerificationKeys([KEY.verification_key()])


def _issue(**changes: object) -> str:
    arguments: dict[str, object] = {
        "subject": "user-alice",
        "companion_id": "companion-a",
        "scopes": [SCOPE_MEMORIES_READ, SCOPE_MEMORIES_WRITE],
        "signing_key": KEY,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "ttl_seconds": 900,
        "now": NOW,
    }
    arguments.update(changes)
    return issue(**arguments)  # type: ignore[arg-type]


def _part(token: str, index: int) -> dict[str, object]:
    segment = token.split(".")[index]
    decoded: dict[str, object] = json.loads(urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def _verify(token: str, **changes: object) -> TokenClaims:
    arguments: dict[str, object] = {"keys": KEYS, "issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    arguments.update(changes)
    return verify(token, **arguments)  # type: ignore[arg-type]


# --- issue -------------------------------------------------------------------------------------------------


def test_issued_token_has_exactly_our_header() -> None:
    assert _part(_issue(), 0) == {"alg": "ES256", "kid": KEY.kid, "typ": "JWT"}


def test_issued_token_carries_the_registered_and_service_claims() -> None:
    # When a token is issued with an owner and an explicit id
    payload = _part(_issue(owner_id="owner-1", token_id="jti-1"), 1)
    # Then it carries exactly these claims, times as integer seconds
    t = int(NOW.timestamp())
    assert payload == {
        "iss": ISSUER,
        "sub": "user-alice",
        "aud": AUDIENCE,
        "cid": "companion-a",
        "oid": "owner-1",
        "scope": "memories:read memories:write",
        "iat": t,
        "nbf": t,
        "exp": t + 900,
        "jti": "jti-1",
    }


def test_each_token_gets_a_fresh_random_id() -> None:
    assert _part(_issue(), 1)["jti"] != _part(_issue(), 1)["jti"]


def test_verified_claims_describe_the_token() -> None:
    claims = _verify(_issue(owner_id="owner-1"))
    assert claims.subject == "user-alice"
    assert claims.companion_id == "companion-a"
    assert claims.owner_id == "owner-1"
    assert claims.scopes == frozenset({SCOPE_MEMORIES_READ, SCOPE_MEMORIES_WRITE})
    assert claims.expires_at == NOW + timedelta(seconds=900)
    assert claims.issued_at == claims.not_before == NOW
    assert claims.key_id == KEY.kid
    assert (claims.issuer, claims.audience) == (ISSUER, AUDIENCE)


@pytest.mark.parametrize("ttl", [MIN_TTL_S, 3600, MAX_TTL_S])
def test_ttl_within_bounds_is_accepted(ttl: int) -> None:
    assert _verify(_issue(ttl_seconds=ttl)).expires_at == NOW + timedelta(seconds=ttl)


@pytest.mark.parametrize("ttl", [0, -1, MIN_TTL_S - 1, MAX_TTL_S + 1, 10**9])
def test_ttl_out_of_bounds_is_a_clear_validation_error(ttl: int) -> None:
    with pytest.raises(ValidationFailed, match="between 60 and 86400"):
        _issue(ttl_seconds=ttl)


@pytest.mark.parametrize("ttl", [True, 900.0, "900", None])
def test_ttl_must_be_an_integer(ttl: object) -> None:
    with pytest.raises(ValidationFailed, match="integer"):
        _issue(ttl_seconds=ttl)


def test_unknown_scope_cannot_be_issued() -> None:
    with pytest.raises(ValidationFailed) as raised:
        _issue(scopes=[SCOPE_MEMORIES_READ, "root"])
    assert raised.value.details == {"unknown": ["root"]}


@pytest.mark.parametrize("subject", ["", "x" * 257])
def test_subject_must_be_a_bounded_non_empty_string(subject: str) -> None:
    with pytest.raises(ValidationFailed, match="subject"):
        _issue(subject=subject)


def test_a_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _issue(now=datetime(2026, 3, 1, 12, 0))  # naive on purpose


def test_a_token_with_no_scopes_verifies_with_an_empty_set() -> None:
    assert _verify(_issue(scopes=[])).scopes == frozenset()


# --- verify: configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [[], ["HS256"], ["ES256", "none"], ["RS256"]])
def test_pinning_an_unsupported_algorithm_is_a_programming_error(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        _verify(_issue(), algorithms=algorithms)


@pytest.mark.parametrize("leeway", [-1, 301])
def test_leeway_is_bounded(leeway: int) -> None:
    with pytest.raises(ValueError, match="leeway"):
        _verify(_issue(), leeway_s=leeway)


def test_zero_leeway_rejects_a_token_one_second_past_expiry() -> None:
    token = _issue(ttl_seconds=60)
    with pytest.raises(InvalidToken) as raised:
        _verify(token, now=NOW + timedelta(seconds=61), leeway_s=0)
    assert raised.value.reason == "expired"


def test_invalid_token_is_an_unauthorized_error_without_details() -> None:
    error = InvalidToken("expired")
    assert isinstance(error, Unauthorized)
    assert error.to_body() == {
        "error": {"code": "unauthorized", "message": "invalid token", "retryable": False}
    }


def test_a_token_addressed_to_its_own_companion_verifies() -> None:
    assert _verify(_issue(), companion_id="companion-a").companion_id == "companion-a"


# --- EdDSA -------------------------------------------------------------------------------------------------


def test_eddsa_round_trips_when_pinned_and_is_refused_when_only_es256_is() -> None:
    # Given an Ed25519 key and a token signed with it
    key = generate_signing_key("EdDSA")
    keys = VerificationKeys([key.verification_key()])
    token = _issue(signing_key=key)
    assert _part(token, 0)["alg"] == "EdDSA"
    # Then it verifies when EdDSA is pinned, and not under the default ES256 pin
    assert _verify(token, keys=keys, algorithms=["EdDSA"]).key_id == key.kid
    with pytest.raises(InvalidToken) as raised:
        _verify(token, keys=keys)
    assert raised.value.reason == "alg_not_allowed"


# --- keys and JWKS -----------------------------------------------------------------------------------------


def test_generated_keys_are_p256_with_distinct_random_kids() -> None:
    keys = [generate_signing_key() for _ in range(20)]
    assert all(isinstance(key.private_key, ec.EllipticCurvePrivateKey) for key in keys)
    assert all(isinstance(key.private_key.curve, ec.SECP256R1) for key in keys)  # type: ignore[union-attr]
    assert len({key.kid for key in keys}) == 20
    assert all(len(key.kid) >= 20 for key in keys)


def test_signing_key_repr_shows_no_key_material() -> None:
    assert "private_key" not in repr(KEY)
    assert KEY.kid in repr(KEY)


def test_public_jwks_publishes_only_public_members() -> None:
    # Given an ES256 and an EdDSA key
    ed = generate_signing_key("EdDSA")
    document = public_jwks([KEY.verification_key(), ed.verification_key()])
    # Then each entry is a public JWK with kid, alg and use
    es_jwk, ed_jwk = document["keys"]
    assert set(es_jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (es_jwk["kty"], es_jwk["crv"], es_jwk["alg"], es_jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert set(ed_jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (ed_jwk["kty"], ed_jwk["crv"], ed_jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert all("d" not in jwk for jwk in document["keys"])


def test_a_key_set_read_back_from_the_published_jwks_verifies_our_tokens() -> None:
    keys = VerificationKeys.from_jwks(json.loads(json.dumps(public_jwks(KEYS))))
    assert keys.kids == {KEY.kid}
    assert _verify(_issue(), keys=keys).key_id == KEY.kid


def test_signing_key_survives_a_pem_round_trip() -> None:
    # Given a key stored as PEM (as the key store will) and read back
    restored = SigningKey.from_pem(KEY.kid, KEY.to_pem())
    # Then tokens it signs verify with the original public key
    assert _verify(_issue(signing_key=restored)).key_id == KEY.kid


def test_signing_key_from_a_private_jwk() -> None:
    private_jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig"}
    numbers = KEY.private_key.private_numbers()  # type: ignore[union-attr]
    size = 32

    def member(value: int) -> str:
        return urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode()

    private_jwk |= {
        "x": member(numbers.public_numbers.x),
        "y": member(numbers.public_numbers.y),
        "d": member(numbers.private_value),
    }
    key = SigningKey.from_jwk(private_jwk)
    assert key.algorithm == "ES256"
    assert key.verification_key().to_jwk() == {**KEY.verification_key().to_jwk(), "kid": "k1"}


def test_verification_key_from_pem() -> None:
    pem = KEY.verification_key().public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert VerificationKey.from_pem(KEY.kid, pem).to_jwk() == KEY.verification_key().to_jwk()


def test_rsa_keys_are_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValidationFailed, match="Unsupported key type"):
        SigningKey.from_pem("k", pem)


def test_p384_keys_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="P-256"):
        VerificationKey("k", "ES256", ec.generate_private_key(ec.SECP384R1()).public_key())


def test_a_key_cannot_be_labelled_with_another_algorithm() -> None:
    with pytest.raises(ValidationFailed, match="does not match"):
        VerificationKey("k", "EdDSA", KEY.verification_key().public_key)


PUBLIC_JWK = KEY.verification_key().to_jwk()


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({**PUBLIC_JWK, "d": "AAAA"}, "private key material"),
        ({**PUBLIC_JWK, "use": "enc"}, "use"),
        ({**PUBLIC_JWK, "key_ops": ["encrypt"]}, "key_ops"),
        ({**PUBLIC_JWK, "alg": "HS256"}, "alg"),
        ({**PUBLIC_JWK, "crv": "P-384"}, "Unsupported key type"),
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "k"}, "Unsupported key type"),
        ({key: value for key, value in PUBLIC_JWK.items() if key != "kid"}, "kid"),
        ({**PUBLIC_JWK, "x": "AAAA"}, "Malformed JWK"),
    ],
    ids=[
        "private d",
        "use enc",
        "key_ops encrypt",
        "alg mismatch",
        "P-384",
        "oct",
        "no kid",
        "point off curve",
    ],
)
def test_unusable_jwks_are_refused(jwk: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        VerificationKey.from_jwk(jwk)


def test_a_jwks_must_hold_a_list_of_keys() -> None:
    with pytest.raises(ValidationFailed, match="keys"):
        VerificationKeys.from_jwks({"keys": {}})


def test_a_key_set_refuses_duplicate_kids() -> None:
    with pytest.raises(ValidationFailed, match="Duplicate kid"):
        VerificationKeys([KEY.verification_key(), KEY.verification_key()])


# --- ECDSA malleability: documented, not a vulnerability ---------------------------------------------------

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_a_malleated_ecdsa_signature_verifies_to_the_same_token_id() -> None:
    # Given a token and the same token with its ECDSA signature's s replaced by n - s (also a valid signature)
    token = _issue(token_id="jti-fixed")
    head, payload, signature = token.split(".")
    raw = urlsafe_b64decode(signature + "==")
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    twin_signature = urlsafe_b64encode(r + (P256_ORDER - s).to_bytes(32, "big")).rstrip(b"=").decode()
    twin = f"{head}.{payload}.{twin_signature}"
    # Then both verify to the same claims: replay and revocation caches must key on jti, never on token text
    assert twin != token
    assert _verify(twin).token_id == _verify(token).token_id == "jti-fixed"


# --- scopes ------------------------------------------------------------------------------------------------


def test_require_scope_passes_when_granted() -> None:
    require_scope(_verify(_issue()), SCOPE_MEMORIES_READ)


@pytest.mark.parametrize("scope", [SCOPE_MEMORIES_DELETE, SCOPE_ADMIN])
def test_require_scope_is_forbidden_when_missing(scope: str) -> None:
    with pytest.raises(Forbidden) as raised:
        require_scope(_verify(_issue()), scope)
    assert raised.value.details == {"required_scope": scope}


def test_admin_does_not_imply_memory_scopes() -> None:
    claims = _verify(_issue(scopes=[SCOPE_ADMIN]))
    assert claims.has_scope(SCOPE_ADMIN)
    with pytest.raises(Forbidden):
        require_scope(claims, SCOPE_MEMORIES_READ)
