-- Storage quotas per companion user (issue 4 item 7): the user's live memories and their stored content
-- bytes, kept on the companion_users row so a store checks them with one locked row read instead of a
-- COUNT + SUM over the user's memories (~27 ms at 10^4 memories).
--
-- Exact and race-free: a writer locks the row first (MemoryUnit.lock_usage: concurrent writes of one user
-- queue there), checks the quota, writes the memory; the trigger below moves the counters in the same
-- transaction, on the row that writer already holds. Every path that changes what counts goes through
-- the trigger: store, import, update, forget (frees quota at once), restore, purge (a forgotten memory
-- no longer counts, so purging it changes nothing), deleting a companion.
--
-- What counts: memories not forgotten (archived and expired-but-unpurged ones too: they are still kept),
-- and the bytes stored for their content (UTF-8 octets of the plain content; a strict companion's sealed
-- envelope, which also holds the summary). memory_stored_bytes is the one definition; the service computes
-- the same to check a write before it happens.

ALTER TABLE companion_users
    ADD COLUMN memory_count bigint NOT NULL DEFAULT 0 CHECK (memory_count >= 0),
    ADD COLUMN content_bytes bigint NOT NULL DEFAULT 0 CHECK (content_bytes >= 0);

CREATE FUNCTION memory_stored_bytes(content text, content_sealed bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT coalesce(octet_length(content), octet_length(content_sealed), 0)::bigint $$;

CREATE FUNCTION track_memory_usage() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS
$$
DECLARE
    d_count  bigint := 0;
    d_bytes  bigint := 0;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.forgotten_at IS NULL THEN
        d_count := d_count - 1;
        d_bytes := d_bytes - memory_stored_bytes(OLD.content, OLD.content_sealed);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.forgotten_at IS NULL THEN
        d_count := d_count + 1;
        d_bytes := d_bytes + memory_stored_bytes(NEW.content, NEW.content_sealed);
    END IF;
    IF d_count = 0 AND d_bytes = 0 THEN
        RETURN NULL;  -- a purge of forgotten rows, a reinforcement: nothing to move
    END IF;
    IF TG_OP = 'DELETE' THEN
        -- The user's row may be going too (a companion's cascade): then there is nothing left to keep.
        UPDATE companion_users SET memory_count = memory_count + d_count, content_bytes = content_bytes + d_bytes
        WHERE companion_id = OLD.companion_id AND user_id = OLD.user_id;
    ELSE
        INSERT INTO companion_users AS cu (companion_id, user_id, memory_count, content_bytes)
        VALUES (NEW.companion_id, NEW.user_id, greatest(d_count, 0), greatest(d_bytes, 0))
        ON CONFLICT (companion_id, user_id) DO UPDATE
            SET memory_count = cu.memory_count + d_count, content_bytes = cu.content_bytes + d_bytes;
    END IF;
    RETURN NULL;
END
$$;

-- Only the columns that change what counts: a recall's access count or a reinforcement fires nothing.
CREATE TRIGGER memories_usage
    AFTER INSERT OR DELETE OR UPDATE OF content, content_sealed, forgotten_at ON memories
    FOR EACH ROW EXECUTE FUNCTION track_memory_usage();

-- Reconciliation: set the counters of every companion user visible in the current tenant context (one
-- user, or a whole companion) to the COUNT and SUM of their memories; answers how many rows were wrong.
-- Runs as the caller, under row-level security, so it can correct only what the caller may see.
CREATE FUNCTION reconcile_memory_usage() RETURNS bigint LANGUAGE sql VOLATILE
SET search_path = public, pg_temp AS
$$
    WITH truth AS (
        SELECT cu.companion_id, cu.user_id,
               count(m.id) AS memory_count,
               coalesce(sum(memory_stored_bytes(m.content, m.content_sealed)), 0) AS content_bytes
        FROM companion_users cu
        LEFT JOIN memories m
          ON m.companion_id = cu.companion_id AND m.user_id = cu.user_id AND m.forgotten_at IS NULL
        GROUP BY cu.companion_id, cu.user_id
    ), fixed AS (
        UPDATE companion_users cu
        SET memory_count = truth.memory_count, content_bytes = truth.content_bytes
        FROM truth
        WHERE cu.companion_id = truth.companion_id AND cu.user_id = truth.user_id
          AND (cu.memory_count, cu.content_bytes) IS DISTINCT FROM (truth.memory_count, truth.content_bytes)
        RETURNING 1
    )
    SELECT count(*) FROM fixed
$$;
REVOKE ALL ON FUNCTION reconcile_memory_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_memory_usage() TO companion_app;

-- The counters of memories stored before this migration. The owner sees no live rows under FORCE ROW
-- LEVEL SECURITY, so it is lifted for this transaction only (the ALTERs commit or roll back with it).
ALTER TABLE companion_users NO FORCE ROW LEVEL SECURITY;
ALTER TABLE memories NO FORCE ROW LEVEL SECURITY;
INSERT INTO companion_users AS cu (companion_id, user_id, memory_count, content_bytes)
SELECT m.companion_id, m.user_id, count(*), sum(memory_stored_bytes(m.content, m.content_sealed))
FROM memories m WHERE m.forgotten_at IS NULL
GROUP BY m.companion_id, m.user_id
ON CONFLICT (companion_id, user_id) DO UPDATE
    SET memory_count = EXCLUDED.memory_count, content_bytes = EXCLUDED.content_bytes;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
ALTER TABLE companion_users FORCE ROW LEVEL SECURITY;
