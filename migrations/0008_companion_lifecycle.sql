-- Companion lifecycle: the history of every companion's configuration (companion_versions), kept by the
-- database itself so no code path can change a companion's name or config without leaving its version.
--
-- companions.version is a semver string; each change of name or config must come with a new version
-- (domain/companions.py decides the bump: see its module docstring). The trigger below records the row as
-- it is after every insert and every such change, and refuses a change of name or config that keeps the
-- version: history is never rewritten, and a rollback is a new version whose config is an old one's.
-- Who made a change, and why (update, rollback, bump), is in audit_log with the same transaction.

CREATE TABLE companion_versions (
    companion_id  uuid NOT NULL,
    owner_id      uuid NOT NULL,
    version       text NOT NULL CHECK (version ~ '^\d+\.\d+\.\d+$'),
    -- The version as numbers, so history sorts as semver (1.10.0 after 1.9.0) and pages by an index.
    version_key   integer[] NOT NULL GENERATED ALWAYS AS (string_to_array(version, '.')::integer[]) STORED,
    name          text NOT NULL,
    config        jsonb NOT NULL CHECK (jsonb_typeof(config) = 'object'),
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (companion_id, version),
    FOREIGN KEY (companion_id, owner_id) REFERENCES companions (id, owner_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX companion_versions_order ON companion_versions (companion_id, version_key);

ALTER TABLE companion_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE companion_versions FORCE ROW LEVEL SECURITY;
-- The owning organisation reads its companions' history; rows are written only by the trigger, which runs
-- as the caller, so the same check holds for them. A companion's own credentials see none of it.
CREATE POLICY companion_versions_of_owner ON companion_versions
    USING (owner_id = app_owner_id())
    WITH CHECK (owner_id = app_owner_id());
CREATE POLICY companion_versions_owner_guard ON companion_versions AS RESTRICTIVE
    USING (owner_id = app_owner_id())
    WITH CHECK (owner_id = app_owner_id());

-- Append-only for the application: a version, once written, is never changed or removed (the rows go only
-- with their companion's row, by the foreign key's cascade).
GRANT SELECT, INSERT ON companion_versions TO companion_app;
REVOKE UPDATE, DELETE, TRUNCATE ON companion_versions FROM companion_app;

CREATE FUNCTION record_companion_version() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS
$$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.name, NEW.config) IS NOT DISTINCT FROM (OLD.name, OLD.config) THEN
            RETURN NULL;  -- a status change, a data key: not a new version
        END IF;
        IF NEW.version = OLD.version THEN
            RAISE EXCEPTION 'a change of a companion''s name or config needs a new version'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'companion_version_changes';
        END IF;
    END IF;
    -- A version already taken (a rollback cannot reuse an old number): unique_violation.
    INSERT INTO companion_versions (companion_id, owner_id, version, name, config, created_at)
    VALUES (NEW.id, NEW.owner_id, NEW.version, NEW.name, NEW.config, NEW.updated_at);
    RETURN NULL;
END
$$;

-- The companions present before this migration: their current config is their first recorded version.
-- The owner sees no live rows under FORCE ROW LEVEL SECURITY, so it is lifted for this transaction only.
ALTER TABLE companions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE companion_versions NO FORCE ROW LEVEL SECURITY;
INSERT INTO companion_versions (companion_id, owner_id, version, name, config, created_at)
SELECT id, owner_id, version, name, config, updated_at FROM companions;
ALTER TABLE companion_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE companions FORCE ROW LEVEL SECURITY;

CREATE TRIGGER companions_versions
    AFTER INSERT OR UPDATE OF name, config, version ON companions
    FOR EACH ROW EXECUTE FUNCTION record_companion_version();

-- Listing an owner's companions by status (GET /companions?status=...), newest first.
CREATE INDEX companions_owner_status ON companions (owner_id, status, created_at, id);
