"""API keys: their shape, their entropy, what is stored of them, and how a presented key is compared."""

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from uuid import uuid4

import pytest

from companion_memory.auth import api_keys
from companion_memory.auth.principal import Principal
from companion_memory.domain.identity import IdentityService
from companion_memory.models.identity import ApiKeyCreate, CompanionCreate
from tests.support.identity import InMemoryIdentityStore, ManualClock

KEY_SHAPE = re.compile(r"^(ok|ck)_[A-Za-z0-9_-]{12}[A-Za-z0-9_-]{43}$")


def _recording_random() -> tuple[Callable[[int], bytes], list[bytes]]:
    drawn: list[bytes] = []

    def draw(n: int) -> bytes:
        import secrets

        chunk = secrets.token_bytes(n)
        drawn.append(chunk)
        return chunk

    return draw, drawn


@pytest.mark.parametrize(("kind", "marker"), [("owner", "ok_"), ("companion", "ck_")])
def test_a_generated_key_has_its_marker_a_12_character_prefix_and_a_43_character_secret(
    kind: api_keys.KeyKind, marker: str
) -> None:
    new = api_keys.generate(kind)
    assert KEY_SHAPE.fullmatch(new.plaintext)
    assert new.plaintext.startswith(marker + new.prefix)
    assert len(new.prefix) == api_keys.PREFIX_LENGTH


def test_the_secret_part_is_exactly_256_random_bits_apart_from_the_prefix() -> None:
    # Given a random source that records what it hands out
    draw, drawn = _recording_random()
    # When a key is generated from it
    new = api_keys.generate("companion", draw)
    # Then the prefix and the secret are two separate draws, and the secret carries all 32 bytes of its own
    assert [len(chunk) for chunk in drawn] == [api_keys.PREFIX_BYTES, api_keys.SECRET_BYTES]
    assert api_keys.SECRET_BYTES * 8 >= 256
    secret = new.plaintext[len("ck_") + api_keys.PREFIX_LENGTH :]
    assert base64.urlsafe_b64decode(secret + "=") == drawn[1]
    assert base64.urlsafe_b64decode(new.prefix) == drawn[0]


def test_keys_drawn_from_the_system_source_never_repeat() -> None:
    keys = {api_keys.generate("companion").plaintext for _ in range(2000)}
    prefixes = {key[3:15] for key in keys}
    assert len(keys) == len(prefixes) == 2000


def test_the_stored_hash_is_the_sha256_of_the_whole_key_and_the_key_is_not_in_any_repr() -> None:
    new = api_keys.generate("owner")
    assert new.hash == hashlib.sha256(new.plaintext.encode()).digest()
    assert new.plaintext not in repr(new)


def test_the_store_receives_the_prefix_and_hash_and_never_the_key() -> None:
    # Given an owner and a companion
    store, clock = InMemoryIdentityStore(), ManualClock()
    service = IdentityService(store, clock)
    owner, owner_key = service.create_owner("Acme")
    principal = Principal(kind="owner", owner_id=owner.id, scopes=frozenset({"admin"}), key_id=uuid4())
    companion = service.create_companion(principal, CompanionCreate(name="Ava"))
    # When a companion key is issued
    issued = service.create_api_key(principal, companion.id, ApiKeyCreate(name="backend"))
    # Then neither key appears anywhere in what was stored (records, hashes, audit details)
    stored = repr(store.keys) + repr(store.audit) + str([k.model_dump() for k in store.keys.values()])
    for plaintext in (owner_key, issued.api_key):
        assert plaintext not in stored
        assert plaintext[15:] not in stored  # not even the secret part
    assert {k.record.prefix for k in store.keys.values()} == {owner_key[3:15], issued.prefix}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ck_",
        "ck_" + "A" * 54,  # one character short
        "ck_" + "A" * 56,  # one too many
        "xk_" + "A" * 55,  # unknown marker
        "ck_" + "A" * 54 + "=",  # padding is not part of the alphabet
        "ck_" + "A" * 54 + "\n",
        "CK_" + "A" * 55,
        "ck_" + "A" * 27 + "%" + "A" * 27,
    ],
)
def test_text_not_shaped_like_a_key_is_not_parsed(text: str) -> None:
    assert api_keys.parse(text) is None


def test_a_parsed_key_names_its_kind_and_prefix() -> None:
    new = api_keys.generate("owner")
    presented = api_keys.parse(new.plaintext)
    assert presented is not None
    assert (presented.kind, presented.prefix) == ("owner", new.prefix)
    assert new.plaintext not in repr(presented)


def test_a_known_and_an_unknown_prefix_both_go_through_one_constant_time_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a comparison that records its calls
    calls: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", compare)
    new = api_keys.generate("companion")
    presented = api_keys.parse(new.plaintext)
    assert presented is not None
    # When the key is checked against its stored hash, against another hash, and with no stored row at all
    results = [
        api_keys.matches(presented, new.hash),
        api_keys.matches(presented, api_keys.generate("companion").hash),
        api_keys.matches(presented, None),
    ]
    # Then only the first matches, and every path compared digests of equal length in constant time
    assert results == [True, False, False]
    assert len(calls) == 3
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_a_key_whose_hash_is_the_dummy_miss_hash_still_does_not_match_a_missing_row() -> None:
    # The miss path compares with a fixed digest; even a key hashing to it must not authenticate.
    presented = api_keys.PresentedKey("companion", "A" * 12, "ck_" + "A" * 55)
    assert api_keys.matches(presented, None) is False
