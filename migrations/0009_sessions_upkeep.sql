-- Sessions and scheduled upkeep (issue 5 items 2 and 3): the companions a schedule walks, the log of
-- finished sessions (the exactly-once key for folding their statistics into companion_users), and what
-- memory upkeep needs (decay bookkeeping, history kinds, its resumable cursor).

-- The companions a schedule walks, across every tenant, a page at a time (ordered by id, after a cursor).
--
-- The app role has no context spanning tenants and must not get one, and a read policy for the schema
-- owner would apply inside every SECURITY DEFINER function the owner has (0006 explains the hazard). So the
-- function belongs to its own role, as the reembed job's access does:
--   companion_scheduler  NOLOGIN, owns only this function, cannot bypass RLS; it may read four columns of
--                        companions (never the wrapped data key, name or timestamps), and its one policy shows
--                        the companions not deleted. Nobody can log in as it; the owner is a member with
--                        INHERIT FALSE (gains nothing) and needs SET only to hand the function over.
-- The signature is stable: the cleanup schedule and the analytics schedule both page through it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'companion_scheduler') THEN
        CREATE ROLE companion_scheduler NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
GRANT companion_scheduler TO CURRENT_USER WITH INHERIT FALSE, SET TRUE;
GRANT USAGE ON SCHEMA public TO companion_scheduler;
GRANT SELECT (id, owner_id, status, config) ON companions TO companion_scheduler;
CREATE POLICY companions_scheduler_read ON companions FOR SELECT TO companion_scheduler
    USING (status <> 'deleted');

CREATE FUNCTION scheduled_companions(after uuid, max_rows integer)
RETURNS TABLE (id uuid, owner_id uuid, status text, config jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS
$$
    SELECT c.id, c.owner_id, c.status, c.config
    FROM companions c
    WHERE c.status <> 'deleted' AND (after IS NULL OR c.id > after)
    ORDER BY c.id
    LIMIT least(greatest(coalesce(max_rows, 0), 0), 1000)
$$;
-- Handing the function to its role needs that role to hold CREATE on the schema at this moment only.
GRANT CREATE ON SCHEMA public TO companion_scheduler;
ALTER FUNCTION scheduled_companions(uuid, integer) OWNER TO companion_scheduler;
REVOKE CREATE ON SCHEMA public FROM companion_scheduler;
REVOKE ALL ON FUNCTION scheduled_companions(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scheduled_companions(uuid, integer) TO companion_app;

-- One row per finished session (a DynamoDB session record whose expiry passed). Its primary key is the
-- session's incarnation id, so folding a session's requests into companion_users happens exactly once
-- whoever finalises it (the touch that restarts the key, or the cleanup schedule, or both racing): the
-- folder inserts here ON CONFLICT DO NOTHING and bumps the counters only when its insert took, in the same
-- transaction. Analytics reads it (conversations per hour); erasing a user deletes their rows.
CREATE TABLE session_log (
    session_id     uuid PRIMARY KEY,
    companion_id   uuid NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_id        text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200 AND user_id <> '*'),
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    request_count  integer NOT NULL CHECK (request_count >= 1),
    folded_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at >= started_at)
);
CREATE INDEX session_log_companion_ended ON session_log (companion_id, ended_at);
CREATE INDEX session_log_user ON session_log (companion_id, user_id, ended_at);

ALTER TABLE session_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_log FORCE ROW LEVEL SECURITY;
CREATE POLICY session_log_tenant ON session_log TO companion_app
    USING (companion_id = app_companion_id() AND app_user_in_scope(user_id))
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));
CREATE POLICY session_log_tenant_guard ON session_log AS RESTRICTIVE TO companion_app
    USING (companion_id = app_companion_id() AND app_user_in_scope(user_id))
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));
-- Append-only but erasable: no UPDATE (a folded session never changes).
GRANT SELECT, INSERT, DELETE ON session_log TO companion_app;

-- Memory upkeep (domain/upkeep.py, run by the cleanup schedule under the companion-wide context).
--   decayed_at  when importance last decayed: decay is by the time since then (or since the last recall or
--               creation, whichever is later), so a run that repeats, overlaps or comes late decays by the
--               same total. It is bookkeeping like access_count: no version, no history, no updated_at.
--   deduped_at  when consolidation last compared this memory with the user's others; NULL, or older than
--               updated_at (the content changed), means compare it again. A new memory is compared with
--               every older one, so a pair of compared memories never needs comparing twice.
ALTER TABLE memories
    ADD COLUMN decayed_at timestamptz,
    ADD COLUMN deduped_at timestamptz;
-- Consolidation's candidates: a user's live memories not compared since their last change.
CREATE INDEX memories_dedupe_pending ON memories (companion_id, user_id)
    WHERE forgotten_at IS NULL AND archived_at IS NULL AND (deduped_at IS NULL OR deduped_at < updated_at);

-- What upkeep records in a memory's history: expired (soft-forgotten by its expiry, the companion's
-- retention or the per-user cap: restorable until the purge), consolidated (archived into a near-duplicate,
-- linked consolidated_into it). Archiving below the importance threshold is 'archived'; decay writes none.
ALTER TABLE memory_history DROP CONSTRAINT memory_history_change_check;
ALTER TABLE memory_history ADD CONSTRAINT memory_history_change_check
    CHECK (change IN ('created', 'reinforced', 'updated', 'forgotten', 'restored', 'archived',
                      'expired', 'consolidated'));

-- Where a scheduled walk over the companions stopped, so the next run resumes there (one row per job). It
-- holds no tenant data: a companion id the walk has passed, nothing else.
CREATE TABLE schedule_cursors (
    job         text PRIMARY KEY CHECK (length(job) BETWEEN 1 AND 100),
    after_id    uuid,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON schedule_cursors TO companion_app;
