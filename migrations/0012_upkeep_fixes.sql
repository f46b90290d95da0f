-- Upkeep fixes (issue 5 review): the schedules' companion directory tells only ids and statuses, upkeep
-- holds a companion through a lease row instead of a transaction, and the cleanup can find deleted
-- companions whose purge did not finish.

-- 1. scheduled_companions told companion_app (the role every function shares) every tenant's owner_id and
-- config. It now returns the id and status only; a schedule reads a companion's owner and config inside that
-- companion's own transaction (0002 companion_self_read), one companion at a time. The role setup of 0009
-- stays; the role loses the columns it no longer needs.
DROP FUNCTION scheduled_companions(uuid, integer);
REVOKE SELECT (owner_id, config) ON companions FROM companion_scheduler;

CREATE FUNCTION scheduled_companions(after uuid, max_rows integer)
RETURNS TABLE (id uuid, status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS
$$
    SELECT c.id, c.status
    FROM companions c
    WHERE c.status <> 'deleted' AND (after IS NULL OR c.id > after)
    ORDER BY c.id
    LIMIT least(greatest(coalesce(max_rows, 0), 0), 1000)
$$;

-- 2. Deleted companions whose data is not purged yet (a delete that ran out of time answers 202 "purge
-- pending"; the cleanup schedule finishes it). Ids only, and only of deleted companions that still hold
-- memories, relationship rows or session log rows: the scheduler role may see which companion ids appear in
-- those tables, never a row's content.
CREATE POLICY companions_scheduler_deleted ON companions FOR SELECT TO companion_scheduler
    USING (status = 'deleted');
GRANT SELECT (companion_id) ON memories, companion_users, session_log TO companion_scheduler;
CREATE POLICY memories_scheduler_leftover ON memories FOR SELECT TO companion_scheduler
    USING (EXISTS (SELECT 1 FROM companions d WHERE d.id = memories.companion_id AND d.status = 'deleted'));
CREATE POLICY companion_users_scheduler_leftover ON companion_users FOR SELECT TO companion_scheduler
    USING (EXISTS (SELECT 1 FROM companions d WHERE d.id = companion_users.companion_id
                   AND d.status = 'deleted'));
CREATE POLICY session_log_scheduler_leftover ON session_log FOR SELECT TO companion_scheduler
    USING (EXISTS (SELECT 1 FROM companions d WHERE d.id = session_log.companion_id AND d.status = 'deleted'));

CREATE FUNCTION deleted_companions_with_data(after uuid, max_rows integer)
RETURNS TABLE (id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS
$$
    SELECT c.id
    FROM companions c
    WHERE c.status = 'deleted' AND (after IS NULL OR c.id > after)
      AND (EXISTS (SELECT 1 FROM memories m WHERE m.companion_id = c.id)
           OR EXISTS (SELECT 1 FROM companion_users u WHERE u.companion_id = c.id)
           OR EXISTS (SELECT 1 FROM session_log s WHERE s.companion_id = c.id))
    ORDER BY c.id
    LIMIT least(greatest(coalesce(max_rows, 0), 0), 1000)
$$;

-- Handing the functions to their role needs that role to hold CREATE on the schema at this moment only.
GRANT CREATE ON SCHEMA public TO companion_scheduler;
ALTER FUNCTION scheduled_companions(uuid, integer) OWNER TO companion_scheduler;
ALTER FUNCTION deleted_companions_with_data(uuid, integer) OWNER TO companion_scheduler;
REVOKE CREATE ON SCHEMA public FROM companion_scheduler;
REVOKE ALL ON FUNCTION scheduled_companions(uuid, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION deleted_companions_with_data(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scheduled_companions(uuid, integer) TO companion_app;
GRANT EXECUTE ON FUNCTION deleted_companions_with_data(uuid, integer) TO companion_app;

-- 3. Upkeep leases. A run held a companion by a transaction-level advisory lock, so one transaction (and its
-- row locks) lasted a whole companion's upkeep, up to ~100 s, and users' writes waited on it. Now each step
-- commits on its own, and a run holds the companion by this row: taken when absent or expired
-- (INSERT ... ON CONFLICT DO UPDATE ... WHERE until < now()), deleted by its holder at the end, and expiring
-- by itself when a run dies (its lease outlasts the function's timeout, so a live run never loses it).
CREATE TABLE upkeep_leases (
    companion_id  uuid PRIMARY KEY REFERENCES companions (id) ON DELETE CASCADE,
    holder        uuid NOT NULL,
    until         timestamptz NOT NULL
);
ALTER TABLE upkeep_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE upkeep_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY upkeep_leases_tenant ON upkeep_leases TO companion_app
    USING (companion_id = app_companion_id())
    WITH CHECK (companion_id = app_companion_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON upkeep_leases TO companion_app;

-- 4. schedule_cursors (0009) stays writable by companion_app, decided after review: every function shares
-- that role, so a SECURITY DEFINER wrapper granted to it would guard nothing more; the table holds no tenant
-- data (a job name and a companion id the walk passed), and the worst a rogue write does is move where the
-- walk resumes, which the next full walk repairs (the cleanup saves it after every companion).
COMMENT ON TABLE schedule_cursors IS
    'Where a scheduled walk resumes (no tenant data). Writable by companion_app by decision: see 0012.';
