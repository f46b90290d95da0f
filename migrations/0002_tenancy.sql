-- Tenancy: organisations (owners), their companions, and each companion's users.
--
-- Row-level security is the last line of tenant isolation. Every policy reads the tenant context the
-- application sets per transaction with set_config(..., true) (see adapters/postgres.py):
--   app.owner_id      the organisation acting (owner keys)
--   app.companion_id  the companion acting or acted on (companion keys, user tokens, owner ops on it)
--   app.user_id       one end user of that companion, or '*' for companion-wide work
-- A missing setting reads as NULL, and NULL never equals anything: no context, no rows.

CREATE FUNCTION app_owner_id() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT nullif(current_setting('app.owner_id', true), '')::uuid $$;

CREATE FUNCTION app_companion_id() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT nullif(current_setting('app.companion_id', true), '')::uuid $$;

-- True when the context covers this user of the current companion.
CREATE FUNCTION app_user_in_scope(candidate text) RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT coalesce(nullif(current_setting('app.user_id', true), '') IN ('*', candidate), false) $$;

GRANT EXECUTE ON FUNCTION app_owner_id(), app_companion_id(), app_user_in_scope(text) TO companion_app;

CREATE TABLE owners (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE companions (
    id                uuid PRIMARY KEY,
    owner_id          uuid NOT NULL REFERENCES owners (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    config            jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    isolation_level   text NOT NULL DEFAULT 'standard' CHECK (isolation_level IN ('standard', 'strict')),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'paused', 'archived', 'deleted')),
    version           text NOT NULL DEFAULT '1.0.0' CHECK (version ~ '^\d+\.\d+\.\d+$'),
    wrapped_data_key  bytea,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX companions_owner ON companions (owner_id, created_at, id);

CREATE TABLE companion_users (
    companion_id          uuid NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_id               text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200 AND user_id <> '*'),
    can_read              boolean NOT NULL DEFAULT true,
    can_write             boolean NOT NULL DEFAULT true,
    can_delete            boolean NOT NULL DEFAULT true,
    is_blocked            boolean NOT NULL DEFAULT false,
    preferences           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(preferences) = 'object'),
    interaction_count     bigint NOT NULL DEFAULT 0,
    first_interaction_at  timestamptz,
    last_interaction_at   timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (companion_id, user_id)
);

ALTER TABLE owners ENABLE ROW LEVEL SECURITY;
ALTER TABLE owners FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_self ON owners
    USING (id = app_owner_id())
    WITH CHECK (id = app_owner_id());

ALTER TABLE companions ENABLE ROW LEVEL SECURITY;
ALTER TABLE companions FORCE ROW LEVEL SECURITY;
-- The owning organisation manages its companions.
CREATE POLICY companion_of_owner ON companions
    USING (owner_id = app_owner_id())
    WITH CHECK (owner_id = app_owner_id());
-- A companion's own credentials may read (not change) its row: config, status, isolation level.
CREATE POLICY companion_self_read ON companions FOR SELECT
    USING (id = app_companion_id());

ALTER TABLE companion_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE companion_users FORCE ROW LEVEL SECURITY;
CREATE POLICY companion_user_scope ON companion_users
    USING (companion_id = app_companion_id() AND app_user_in_scope(user_id))
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));

GRANT SELECT, INSERT, UPDATE, DELETE ON owners, companions, companion_users TO companion_app;
