-- Lifecycle guards (issue 5 review): what the lifecycle and erasure claim, enforced by the database itself.

-- 1. Nothing of a user is written for a deleted companion; no memory for a companion that is not active.
--
-- A deleted companion's credentials may keep working for up to 45 s (docs/security.md: the authenticator's
-- 15 s cache and the authorizer's 30 s one), and a write that lands after the delete's purge survives it. So
-- a row of user data can be inserted only while its companion is not deleted, and a memory only while it is
-- active: checked by a trigger on each table, which no code path can skip (the memory store, its importer,
-- the companion import, the activity counters, the session ledger, the usage counters' own trigger).
--
-- The check and the tombstone are serialised by a transaction advisory lock per companion: each guarded
-- insert takes it shared, the move to 'deleted' exclusive (trigger 2 below). A write therefore either commits
-- before the tombstone (and the purge, which starts after the tombstone commits, removes it) or waits for the
-- tombstone and then reads 'deleted' and is refused; it can never commit between the tombstone and the purge.
-- (Reading the row FOR SHARE instead would need an UPDATE privilege and policy on companions in the user's
-- context; the advisory lock needs neither and locks no row.)
--
-- The refusal is a check_violation of the constraint 'companion_not_active' whose detail is the status:
-- adapters/postgres.py turns it into the status's CompanionInactive error (companion_deleted, ...).
CREATE FUNCTION companion_lifecycle_lock_key(companion uuid) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS
$$ SELECT ARRAY[hashtext('companion_lifecycle'), hashtext(companion::text)] $$;

CREATE FUNCTION refuse_rows_of_retired_companion() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS
$$
DECLARE
    key integer[] := companion_lifecycle_lock_key(NEW.companion_id);
    current_status text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(key[1], key[2]);
    -- A new statement, so a new snapshot: a tombstone committed while this waited is seen. Under row-level
    -- security every legitimate writer sees the row (companion_self_read, 0002: each guarded table's policy
    -- requires the row's companion to be the context's). A companion it cannot see is not its own, or does
    -- not exist: the table's policy or foreign key refuses that row, with their own error.
    SELECT c.status INTO current_status FROM companions c WHERE c.id = NEW.companion_id;
    IF current_status = 'deleted' OR (TG_ARGV[0] = 'active' AND current_status <> 'active') THEN
        RAISE EXCEPTION 'companion % is %', NEW.companion_id, current_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'companion_not_active', DETAIL = current_status;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER memories_companion_active BEFORE INSERT ON memories
    FOR EACH ROW EXECUTE FUNCTION refuse_rows_of_retired_companion('active');
CREATE TRIGGER memory_imports_companion_not_deleted BEFORE INSERT ON memory_imports
    FOR EACH ROW EXECUTE FUNCTION refuse_rows_of_retired_companion('not_deleted');
-- Upkeep still folds a paused or archived companion's finished sessions into these (they happened).
CREATE TRIGGER companion_users_companion_not_deleted BEFORE INSERT ON companion_users
    FOR EACH ROW EXECUTE FUNCTION refuse_rows_of_retired_companion('not_deleted');
CREATE TRIGGER session_log_companion_not_deleted BEFORE INSERT ON session_log
    FOR EACH ROW EXECUTE FUNCTION refuse_rows_of_retired_companion('not_deleted');
CREATE TRIGGER activity_hourly_companion_not_deleted BEFORE INSERT ON activity_hourly
    FOR EACH ROW EXECUTE FUNCTION refuse_rows_of_retired_companion('not_deleted');

-- 2. 'deleted' is terminal, and a deleted companion never gets a data key again (crypto-shredding holds).
-- The move to 'deleted' takes the companion's lifecycle lock exclusively (see 1), so it waits for the writes
-- in flight and holds back new ones until the tombstone commits.
CREATE FUNCTION guard_companion_lifecycle() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS
$$
DECLARE
    key integer[];
BEGIN
    IF OLD.status = 'deleted' THEN
        IF NEW.status <> 'deleted' OR NEW.wrapped_data_key IS NOT NULL THEN
            RAISE EXCEPTION 'companion % is deleted, for good', OLD.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'companion_deleted_is_terminal';
        END IF;
    ELSIF NEW.status = 'deleted' THEN
        key := companion_lifecycle_lock_key(OLD.id);
        PERFORM pg_advisory_xact_lock(key[1], key[2]);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER companions_lifecycle BEFORE UPDATE ON companions
    FOR EACH ROW EXECUTE FUNCTION guard_companion_lifecycle();

-- 3. companion_versions is written only by the trigger of 0008 (it said so; the app role could INSERT too, so
-- a forged history row was one statement away). The trigger function now runs as its own NOLOGIN role, which
-- may insert into that table and do nothing else; the app role loses INSERT. RLS still applies to the role
-- (it cannot bypass it): the row's owner must be the context's owner, as before.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'companion_version_recorder') THEN
        CREATE ROLE companion_version_recorder NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
GRANT companion_version_recorder TO CURRENT_USER WITH INHERIT FALSE, SET TRUE;
GRANT USAGE ON SCHEMA public TO companion_version_recorder;
GRANT EXECUTE ON FUNCTION app_owner_id() TO companion_version_recorder;
GRANT INSERT ON companion_versions TO companion_version_recorder;
ALTER FUNCTION record_companion_version() SECURITY DEFINER;
GRANT CREATE ON SCHEMA public TO companion_version_recorder;
ALTER FUNCTION record_companion_version() OWNER TO companion_version_recorder;
REVOKE CREATE ON SCHEMA public FROM companion_version_recorder;
REVOKE ALL ON FUNCTION record_companion_version() FROM PUBLIC;
REVOKE INSERT ON companion_versions FROM companion_app;

-- 4. companion_imports: the app claims, completes and releases imports, and never deletes one (the rows go
-- with their owner or their companion, by cascade). The default privileges of 0001 had granted DELETE.
REVOKE DELETE ON companion_imports FROM companion_app;

-- 5. pseudonymise_audit_companion (0011) rewrote every user of a companion that was still live: only a
-- deleted companion's users are pseudonymised at once (a live one's users are erased one by one). Its role
-- may now read the status of the context owner's companions (companion_of_owner, 0002, shows them).
GRANT SELECT (id, owner_id, status) ON companions TO companion_audit_redactor;
GRANT CREATE ON SCHEMA public TO companion_audit_redactor;
SET LOCAL ROLE companion_audit_redactor;
CREATE OR REPLACE FUNCTION pseudonymise_audit_companion(companion uuid) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS
$$
    WITH rewritten AS (
        UPDATE audit_log
        SET target = CASE WHEN target LIKE 'user:%'
                          THEN audit_user_pseudonym(companion, substr(target, 6)) ELSE target END,
            actor = CASE WHEN actor LIKE 'user:%'
                         THEN audit_user_pseudonym(companion, substr(actor, 6)) ELSE actor END
        WHERE owner_id = app_owner_id() AND companion_id = companion
          AND (target LIKE 'user:%' OR actor LIKE 'user:%')
          AND EXISTS (SELECT FROM companions c
                      WHERE c.id = companion AND c.owner_id = app_owner_id() AND c.status = 'deleted')
        RETURNING 1
    )
    SELECT count(*) FROM rewritten
$$;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM companion_audit_redactor;

-- 6. Erased users: a user token issued at or before its user's erasure is refused (auth/principal.py), so an
-- erased user's old token cannot write again under the same id. Erasure deletes the user's companion_users
-- row (and a block with it), so the fact is kept here: the companion and the user's pseudonym (the audit
-- log's, 0011: no id in clear), and when. Kept for good (adapters/postgres_erasure.py RETAINED_TABLES); a
-- later erasure of the same id moves erased_at forward. Rows are visible to the user's own context, by the
-- pseudonym of app.user_id, or to the companion-wide one ('*').
CREATE TABLE erased_users (
    companion_id    uuid NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_pseudonym  text NOT NULL CHECK (user_pseudonym ~ '^user_sha256:[0-9a-f]{64}$'),
    erased_at       timestamptz NOT NULL,
    PRIMARY KEY (companion_id, user_pseudonym)
);
ALTER TABLE erased_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE erased_users FORCE ROW LEVEL SECURITY;
CREATE FUNCTION app_user_pseudonym_in_scope(companion uuid, pseudonym text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS
$$
    SELECT coalesce(
        current_setting('app.user_id', true) = '*'
        OR pseudonym = audit_user_pseudonym(companion, nullif(current_setting('app.user_id', true), '')),
        false)
$$;
GRANT EXECUTE ON FUNCTION app_user_pseudonym_in_scope(uuid, text) TO companion_app;
CREATE POLICY erased_users_tenant ON erased_users TO companion_app
    USING (companion_id = app_companion_id() AND app_user_pseudonym_in_scope(companion_id, user_pseudonym))
    WITH CHECK (companion_id = app_companion_id() AND app_user_pseudonym_in_scope(companion_id, user_pseudonym));
CREATE POLICY erased_users_tenant_guard ON erased_users AS RESTRICTIVE TO companion_app
    USING (companion_id = app_companion_id() AND app_user_pseudonym_in_scope(companion_id, user_pseudonym))
    WITH CHECK (companion_id = app_companion_id() AND app_user_pseudonym_in_scope(companion_id, user_pseudonym));
-- Recorded and moved forward, never removed by the app.
REVOKE ALL ON erased_users FROM companion_app;
GRANT SELECT, INSERT, UPDATE ON erased_users TO companion_app;
