-- Re-embedding under a new model (`companion-memory reembed`): a narrow role for a cross-tenant job.
--
-- The job must read every tenant's memories and add vectors of another model beside the old ones. The app
-- role has no context spanning tenants and must not get one. Policies for the schema owner itself (as for
-- the purge, 0003) would also apply inside every SECURITY DEFINER function the app may call, so a wide
-- owner read policy could later turn such a function into a cross-tenant read. Instead:
--
--   companion_reembed  NOLOGIN, owns nothing, cannot bypass RLS. Only the schema owner is a member, with
--                      INHERIT FALSE and SET TRUE: the owner gains nothing from it until a transaction says
--                      `SET LOCAL ROLE companion_reembed`, which no SECURITY DEFINER function can do (and the
--                      app role, not a member, cannot do at all).
--
-- What the role may do, and nothing else:
--   memories           read the columns needed to embed (id, tenant, content or ciphertext, version) of every
--                      row, forgotten ones included (a restored memory must come back with its vectors); lock
--                      a row FOR SHARE while inserting its new vector, so an edit of the content running at
--                      that moment either sees the new vector and deletes it as stale, or makes the insert
--                      skip the row. Locking needs an UPDATE privilege and policy; the policy's WITH CHECK is
--                      false, so no row can actually be updated.
--   memory_embeddings  see which (memory, model) pairs exist; insert a vector whose tenant columns are its
--                      memory's own. No UPDATE, no DELETE: the old model's rows are never touched.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'companion_reembed') THEN
        CREATE ROLE companion_reembed NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
GRANT companion_reembed TO CURRENT_USER WITH INHERIT FALSE, SET TRUE;

GRANT USAGE ON SCHEMA public TO companion_reembed;

GRANT SELECT (id, companion_id, user_id, content, content_sealed, version) ON memories TO companion_reembed;
GRANT UPDATE (version) ON memories TO companion_reembed;
CREATE POLICY memories_reembed_read ON memories FOR SELECT TO companion_reembed USING (true);
CREATE POLICY memories_reembed_lock ON memories FOR UPDATE TO companion_reembed USING (true) WITH CHECK (false);

GRANT SELECT (memory_id, model) ON memory_embeddings TO companion_reembed;
GRANT INSERT (memory_id, companion_id, user_id, model, embedding) ON memory_embeddings TO companion_reembed;
CREATE POLICY memory_embeddings_reembed_read ON memory_embeddings FOR SELECT TO companion_reembed USING (true);
CREATE POLICY memory_embeddings_reembed_insert ON memory_embeddings FOR INSERT TO companion_reembed
    WITH CHECK (EXISTS (
        SELECT FROM memories m
        WHERE m.id = memory_embeddings.memory_id
          AND m.companion_id = memory_embeddings.companion_id
          AND m.user_id = memory_embeddings.user_id
    ));
