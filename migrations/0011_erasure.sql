-- Erasure and companion transfer (issue 5 items 6 and 7).
--
-- 1. The audit log keeps no erased user's id in clear.
--
-- The audit log is append-only for the app role (0004), and it names users in clear: "token.issued" and
-- "permission.changed" have the target 'user:<id>', and a user token's own actions the actor 'user:<id>'.
-- Erasing a user must not leave their id there, nor lose the record that something happened. So erasure
-- replaces 'user:<id>' by 'user_sha256:<hex>' where hex = sha256('<companion id>:<user id>'): the same
-- pseudonym the "user.erased" event itself carries, so the rows stay linked to each other, and an operator
-- who is given the id (a data subject's request) can still find them; the log never holds the id again.
-- (A pseudonym of a guessable id can be confirmed by guessing; it is not anonymous. docs/security.md.)
--
-- Only this function may rewrite audit rows, and only those two columns, only from 'user:<id>' to its
-- pseudonym, only of the owner in the caller's context. As in 0009, it belongs to its own NOLOGIN role (a
-- policy for the schema owner would apply inside every SECURITY DEFINER function the owner has):
--   companion_audit_redactor  owns only this function, cannot bypass RLS, may read and update the two
--                             columns of the rows its one UPDATE policy shows: the context owner's.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'companion_audit_redactor') THEN
        CREATE ROLE companion_audit_redactor NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
GRANT companion_audit_redactor TO CURRENT_USER WITH INHERIT FALSE, SET TRUE;
GRANT USAGE ON SCHEMA public TO companion_audit_redactor;
GRANT EXECUTE ON FUNCTION app_owner_id() TO companion_audit_redactor;
GRANT SELECT (owner_id, companion_id, actor, target), UPDATE (actor, target) ON audit_log
    TO companion_audit_redactor;
-- audit_read_by_owner (0004) already shows the role the context owner's rows; this one lets it write them.
CREATE POLICY audit_redact ON audit_log FOR UPDATE TO companion_audit_redactor
    USING (owner_id = app_owner_id())
    WITH CHECK (owner_id = app_owner_id());

CREATE FUNCTION audit_user_pseudonym(companion uuid, user_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS
$$ SELECT 'user_sha256:' || encode(sha256(convert_to(companion::text || ':' || user_id, 'UTF8')), 'hex') $$;
GRANT EXECUTE ON FUNCTION audit_user_pseudonym(uuid, text) TO companion_app, companion_audit_redactor;

-- Answers how many audit rows it rewrote (0 the second time).
CREATE FUNCTION pseudonymise_audit_user(companion uuid, erased_user text) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS
$$
    WITH rewritten AS (
        UPDATE audit_log
        SET target = CASE WHEN target = 'user:' || erased_user
                          THEN audit_user_pseudonym(companion, erased_user) ELSE target END,
            actor = CASE WHEN actor = 'user:' || erased_user
                         THEN audit_user_pseudonym(companion, erased_user) ELSE actor END
        WHERE owner_id = app_owner_id() AND companion_id = companion
          AND (target = 'user:' || erased_user OR actor = 'user:' || erased_user)
        RETURNING 1
    )
    SELECT count(*) FROM rewritten
$$;
-- A deleted companion: every user it names, at once.
CREATE FUNCTION pseudonymise_audit_companion(companion uuid) RETURNS bigint
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
        RETURNING 1
    )
    SELECT count(*) FROM rewritten
$$;
GRANT CREATE ON SCHEMA public TO companion_audit_redactor;
ALTER FUNCTION pseudonymise_audit_user(uuid, text) OWNER TO companion_audit_redactor;
ALTER FUNCTION pseudonymise_audit_companion(uuid) OWNER TO companion_audit_redactor;
REVOKE CREATE ON SCHEMA public FROM companion_audit_redactor;
REVOKE ALL ON FUNCTION pseudonymise_audit_user(uuid, text), pseudonymise_audit_companion(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pseudonymise_audit_user(uuid, text), pseudonymise_audit_companion(uuid) TO companion_app;

-- 2. Companion imports: which companion an export of a source companion was imported into, per owner, so
-- the same import sent again resumes into that companion instead of creating another. An import claims the
-- row (companion_id NULL) before it creates the companion and completes it after, so of two imports of one
-- source at once exactly one creates a companion; a claim whose import died is taken over once stale. The
-- row goes with its owner; a tombstoned (deleted) target is replaced by a fresh import.
CREATE TABLE companion_imports (
    owner_id             uuid NOT NULL REFERENCES owners (id) ON DELETE CASCADE,
    source_companion_id  uuid NOT NULL,
    companion_id         uuid,
    claimed_at           timestamptz NOT NULL,
    PRIMARY KEY (owner_id, source_companion_id),
    FOREIGN KEY (companion_id, owner_id) REFERENCES companions (id, owner_id) ON DELETE CASCADE
);

ALTER TABLE companion_imports ENABLE ROW LEVEL SECURITY;
ALTER TABLE companion_imports FORCE ROW LEVEL SECURITY;
CREATE POLICY companion_imports_owner ON companion_imports TO companion_app
    USING (owner_id = app_owner_id())
    WITH CHECK (owner_id = app_owner_id());
GRANT SELECT, INSERT, UPDATE ON companion_imports TO companion_app;

-- 3. A deleted companion's config history goes with its data (the tombstone keeps no config content).
-- companion_versions is append-only for the app role (0008); deleting is granted here, and a restrictive
-- policy confines it to companions already marked deleted, so no live companion's history can be removed.
GRANT DELETE ON companion_versions TO companion_app;
CREATE POLICY companion_versions_erase ON companion_versions AS RESTRICTIVE FOR DELETE TO companion_app
    USING (EXISTS (SELECT FROM companions c WHERE c.id = companion_id AND c.status = 'deleted'));
