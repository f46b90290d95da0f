-- Identity: API keys (owner keys ok_..., companion keys ck_...) and the audit log of security events.
--
-- A key is stored as its public prefix (for lookup) and the SHA-256 of the whole key, never the key.
-- A plain fast hash is sound here, unlike for passwords: the secret part is 256 random bits, so there is
-- nothing to guess; a pepper would add a second secret to distribute and rotate without adding strength.
--
-- The chicken-and-egg of authentication: a key is looked up by its prefix before the tenant is known.
-- Row-level security is not bypassed for it. The lookup sets app.api_key_prefix transaction-locally and a
-- SELECT-only policy shows exactly the row with that prefix (the prefix is unique): knowing a prefix reveals
-- that key's metadata and hash, never another row, and only the key itself matches the hash.

-- Lets api_keys tie a companion key to the companion *of its owner* with one foreign key.
ALTER TABLE companions ADD CONSTRAINT companions_id_owner UNIQUE (id, owner_id);

CREATE FUNCTION app_api_key_prefix() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT nullif(current_setting('app.api_key_prefix', true), '') $$;
GRANT EXECUTE ON FUNCTION app_api_key_prefix() TO companion_app;

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('owner', 'companion')),
    owner_id      uuid NOT NULL REFERENCES owners (id) ON DELETE CASCADE,
    companion_id  uuid,
    prefix        text NOT NULL UNIQUE CHECK (prefix ~ '^[A-Za-z0-9_-]{12}$'),
    hash          bytea NOT NULL CHECK (length(hash) = 32),
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    scopes        text[] NOT NULL
                  CHECK (scopes <@ ARRAY['memories:read', 'memories:write', 'memories:delete', 'admin']),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    -- Rotation: the successor, and until when this (old) key stays valid beside it.
    replaced_by   uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    grace_until   timestamptz,
    CHECK ((kind = 'owner') = (companion_id IS NULL)),
    FOREIGN KEY (companion_id, owner_id) REFERENCES companions (id, owner_id) ON DELETE CASCADE
);
CREATE INDEX api_keys_companion ON api_keys (companion_id, created_at) WHERE companion_id IS NOT NULL;
CREATE INDEX api_keys_owner ON api_keys (owner_id, created_at);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
-- The organisation manages its keys (create, list, revoke, rotate, last-used stamps).
CREATE POLICY api_key_of_owner ON api_keys
    USING (owner_id = app_owner_id())
    WITH CHECK (owner_id = app_owner_id());
-- Authentication: read the one row whose prefix the request presented; nothing else, and no writes.
CREATE POLICY api_key_by_prefix ON api_keys FOR SELECT
    USING (prefix = app_api_key_prefix());

GRANT SELECT, INSERT, UPDATE ON api_keys TO companion_app;
REVOKE DELETE, TRUNCATE ON api_keys FROM companion_app;

-- Security events. No foreign keys on purpose: the record of who did what outlives what it was done to
-- (an erased user, a deleted companion). details never holds a secret (keys, tokens, content).
CREATE TABLE audit_log (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id      uuid NOT NULL,
    companion_id  uuid,
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 300),
    action        text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target        text CHECK (length(target) <= 300),
    details       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_owner ON audit_log (owner_id, at);
CREATE INDEX audit_log_companion ON audit_log (companion_id, at) WHERE companion_id IS NOT NULL;

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_read_by_owner ON audit_log FOR SELECT
    USING (owner_id = app_owner_id());
CREATE POLICY audit_append ON audit_log FOR INSERT
    WITH CHECK (owner_id = app_owner_id());

-- Append-only for the application: the default privileges granted UPDATE and DELETE; take them back.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM companion_app;
GRANT SELECT, INSERT ON audit_log TO companion_app;
