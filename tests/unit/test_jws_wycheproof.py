"""Google Wycheproof JSON Web Signature vectors against our verifier (``tokens.verify_signature``).

Each group carries a key and tokens marked valid or invalid. We pin the verifier to the group's key and the
algorithm that key implies. Our verifier loads only signature keys of the algorithms we sign with (ES256,
EdDSA); for any other group (RSA, HMAC, P-521, encryption keys) loading the key must fail, and the token must
still be rejected by an ES256-pinned key set mapping the token's own ``kid`` to our key.
So: every "invalid" case is rejected; a "valid" case is accepted exactly when its algorithm is one we pin.
"""

import binascii
import json
from base64 import urlsafe_b64decode
from pathlib import Path
from typing import Any, Protocol

import pytest

from companion_memory.auth.tokens import (
    InvalidToken,
    VerificationKey,
    VerificationKeys,
    generate_signing_key,
    verify_signature,
)
from companion_memory.errors import ValidationFailed

# In CI the repository is cloned with shared/ beside it (../shared).
VECTORS = Path(__file__).parents[3] / "shared" / "testdata" / "json_web_signature_test.json"

if not VECTORS.is_file():
    pytest.skip(
        f"Wycheproof JWS vectors not found at {VECTORS} (clone shared/ beside the repo)",
        allow_module_level=True,
    )

SUITE = "wycheproof JWS"
DATA: dict[str, Any] = json.loads(VECTORS.read_text())
CASES = [(group, case) for group in DATA["testGroups"] for case in group["tests"]]
# A key of ours, never one of the vectors': a token accepted through it would be a forgery.
OUR_KEY = generate_signing_key("ES256").verification_key()


class Recorder(Protocol):
    def __call__(self, suite: str, outcome: str) -> None: ...


def _group_key(group: dict[str, Any]) -> VerificationKey | None:
    # HMAC groups only have a "private" (the shared secret); loading it must fail like any unsupported key.
    jwk = group.get("public") or group["private"]
    try:
        return VerificationKey.from_jwk(jwk)
    except ValidationFailed:
        return None


def _token_kid(jws: str) -> str:
    """The kid the token claims, read leniently (test-side only), so our alias key set resolves it."""
    try:
        header = json.loads(urlsafe_b64decode(jws.split(".")[0] + "==="))
        kid = header.get("kid") if isinstance(header, dict) else None
    except (ValueError, binascii.Error):
        kid = None
    return kid if isinstance(kid, str) and 0 < len(kid) <= 128 else "alias"


def test_every_vector_is_collected() -> None:
    assert len(CASES) == DATA["numberOfTests"]


@pytest.mark.parametrize(
    ("group", "case"), CASES, ids=[f"tc{case['tcId']}-{case['comment']}" for _, case in CASES]
)
def test_vector(group: dict[str, Any], case: dict[str, Any], security_cases: Recorder) -> None:
    # Given the group's key, if it is one we support
    key = _group_key(group)
    valid = case["result"] == "valid"
    if key is not None:
        keys = VerificationKeys([key])
        # When the token is verified pinned to that key's algorithm
        if valid:
            # Then a valid token is accepted
            verified = verify_signature(case["jws"], keys, [key.algorithm])
            assert verified.key == key
            security_cases(SUITE, "accepted (valid)")
        else:
            # Then an invalid one is rejected with InvalidToken, never another exception
            with pytest.raises(InvalidToken):
                verify_signature(case["jws"], keys, [key.algorithm])
            security_cases(SUITE, "rejected (invalid)")
        return
    # Given a key we refuse to load (algorithm we do not sign with, or a key not meant for signatures)
    # When the token is verified against ES256 with its own kid mapped to one of our keys
    alias = VerificationKeys([VerificationKey(_token_kid(case["jws"]), "ES256", OUR_KEY.public_key)])
    # Then it is rejected all the same
    with pytest.raises(InvalidToken):
        verify_signature(case["jws"], alias, ["ES256"])
    outcome = "rejected (valid, algorithm not pinned)" if valid else "rejected (invalid, key refused)"
    security_cases(SUITE, outcome)
