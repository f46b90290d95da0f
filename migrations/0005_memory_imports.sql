-- Import keys: the client's key of each bulk-imported line, so a re-sent line never stores a copy.
--
-- Why a table here and not the Powertools idempotency table: the key must live as long as the memory
-- (a file re-sent next month must not duplicate; Powertools records expire within hours), a whole batch
-- is claimed in one round trip (not one DynamoDB write per line), and the rows sit under the same
-- row-level security as the memories they name. The primary key is the unique constraint that decides
-- which of two concurrent imports of one line stores it.
--
-- A line is claimed (memory_id NULL) before its memory is stored and completed (memory_id set) after. A
-- claim whose import died between the two is taken over once ``claimed_at`` is older than the importer's
-- lease; the memory it may have stored meanwhile is then met by the near-duplicate check (reinforced,
-- not copied). When the memory is purged for good, its key goes with it (ON DELETE CASCADE).

CREATE TABLE memory_imports (
    companion_id  uuid NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    import_key    text NOT NULL CHECK (length(import_key) BETWEEN 1 AND 200),
    memory_id     uuid REFERENCES memories (id) ON DELETE CASCADE,
    claimed_at    timestamptz NOT NULL,
    PRIMARY KEY (companion_id, user_id, import_key)
);

ALTER TABLE memory_imports ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_imports FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_imports_tenant ON memory_imports TO companion_app
    USING (companion_id = app_companion_id() AND app_user_in_scope(user_id))
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));
CREATE POLICY memory_imports_tenant_guard ON memory_imports AS RESTRICTIVE TO companion_app
    USING (companion_id = app_companion_id() AND app_user_in_scope(user_id))
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));

GRANT SELECT, INSERT, UPDATE, DELETE ON memory_imports TO companion_app;
