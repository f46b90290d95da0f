"""moto in server mode, with KMS keys that survive a restart of the local stack.

moto keeps everything in memory and draws key ids and key material at random, while the local
PostgreSQL keeps its data across restarts. Per-companion data keys are stored wrapped by the KMS
key, so a fresh random key after `make down && make up` would make every wrapped key (and all
sealed content) unreadable. Keys whose description starts with ``STABLE_PREFIX`` therefore get an
id and material derived from a per-stack seed and their description: the same key every time.

DynamoDB applies the writes to one item one at a time (a conditional write sees every write before it);
moto's threaded server does not (its UpdateItem reads, computes and stores without a lock, so two requests
at once can lose an ADD or both pass a condition). ``_serialise_item_writes`` gives the local stack
DynamoDB's guarantee with one lock around item writes, so concurrent session touches, the concurrent-
session limit and the cleanup's conditional deletes behave locally as they do on AWS.

Run as ``python -m localdev.motoserver --port P`` with the seed in ``LOCALDEV_KMS_SEED``
(hex; the environment keeps it out of ``ps``).
"""

import argparse
import hashlib
import hmac
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

STABLE_PREFIX = "companion-memory-local"


def _derive(seed: bytes, purpose: str, description: str) -> bytes:
    return hmac.new(seed, f"{purpose}\0{description}".encode(), hashlib.sha256).digest()


def _make_keys_stable(seed: bytes) -> None:
    from moto.kms.models import Key

    original_init = Key.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.multi_region or not str(self.description).startswith(STABLE_PREFIX):
            return
        key_id = str(uuid.UUID(bytes=_derive(seed, "id", self.description)[:16], version=4))
        self.arn = self.arn.replace(self.id, key_id)
        self.id = key_id
        self.key_material = _derive(seed, "material", self.description)

    Key.__init__ = init  # type: ignore[method-assign]


_ITEM_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


def _serialise_item_writes() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    # Re-entrant: a batch or transaction may call the single-item writes it is made of.
    lock = threading.RLock()

    def serialised(write: Callable[..., Any]) -> Callable[..., Any]:
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return write(*args, **kwargs)

        return locked

    for name in _ITEM_WRITES:
        setattr(DynamoDBBackend, name, serialised(getattr(DynamoDBBackend, name)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    seed = bytes.fromhex(os.environ.pop("LOCALDEV_KMS_SEED", ""))
    if not seed:
        raise SystemExit("LOCALDEV_KMS_SEED is not set")
    _make_keys_stable(seed)
    _serialise_item_writes()
    from moto.moto_api._internal import mock_random

    # Seeded ids (secret ARN suffixes, ...): the stack creates its resources in a fixed order after
    # each start, so the ARNs in stack.env stay the same across restarts.
    mock_random.seed(int.from_bytes(seed[:8], "big"))

    from moto.server import main as moto_main

    moto_main(["--host", "127.0.0.1", "--port", str(args.port)])


if __name__ == "__main__":
    main()
