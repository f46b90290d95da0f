"""What a credential may be granted: the scope names and the bounds of a user token's lifetime.

Constants only, so that code which checks a scope or validates a requested lifetime (models, domain
services, functions that never see a JWT, such as analytics) does not load the JWT and cryptography stack
that ``auth.tokens`` needs; ``auth.tokens`` re-exports them.
"""

from typing import Final

SCOPE_MEMORIES_READ: Final = "memories:read"
SCOPE_MEMORIES_WRITE: Final = "memories:write"
SCOPE_MEMORIES_DELETE: Final = "memories:delete"
SCOPE_ADMIN: Final = "admin"
ALL_SCOPES: Final[frozenset[str]] = frozenset(
    {SCOPE_MEMORIES_READ, SCOPE_MEMORIES_WRITE, SCOPE_MEMORIES_DELETE, SCOPE_ADMIN}
)

MIN_TTL_S: Final = 60
MAX_TTL_S: Final = 24 * 60 * 60
