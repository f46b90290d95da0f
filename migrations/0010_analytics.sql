-- Analytics (issue 5 items 4 and 5): how much each companion user uses a companion, hour by hour.
--
-- One row per (companion, user, hour): every memory request MemoryAccess admits (REST request or MCP tool
-- call, once, after every check) adds 1 to reads, writes or deletes with one autocommit upsert. Requests
-- of one user in one hour queue briefly on that row; companion-wide figures are a GROUP BY at read time.
-- The rows are user data: erasing a user deletes them (a TenantDataStore), a companion's go with it.
--
-- Hours are UTC hour starts (date_trunc with an explicit zone: a session's TimeZone, e.g. a half-hour
-- offset, must not move a bucket).

CREATE TABLE activity_hourly (
    companion_id  uuid NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_id       text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200 AND user_id <> '*'),
    hour          timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    reads         bigint NOT NULL DEFAULT 0 CHECK (reads >= 0),
    writes        bigint NOT NULL DEFAULT 0 CHECK (writes >= 0),
    deletes       bigint NOT NULL DEFAULT 0 CHECK (deletes >= 0),
    PRIMARY KEY (companion_id, user_id, hour)
);
-- Companion-wide series and windows (metrics, health, leaderboard) read by hour across users.
CREATE INDEX activity_hourly_companion_hour ON activity_hourly (companion_id, hour);

ALTER TABLE activity_hourly ENABLE ROW LEVEL SECURITY;
ALTER TABLE activity_hourly FORCE ROW LEVEL SECURITY;
-- The tenant pair of 0003: a companion user's rows, or a companion's with user '*'.
CREATE POLICY activity_hourly_tenant ON activity_hourly TO companion_app
    USING (companion_id = app_companion_id() AND app_user_in_scope(user_id))
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));
-- The leaderboard ranks an organisation's companions in one query: with an owner context and no companion
-- context, the owner reads (never writes) the activity of its own companions. Counts only, no content: what
-- an owner key may already read companion by companion.
CREATE POLICY activity_hourly_owner_read ON activity_hourly FOR SELECT TO companion_app
    USING (
        app_companion_id() IS NULL
        AND companion_id IN (SELECT c.id FROM companions c WHERE c.owner_id = app_owner_id())
    );
CREATE POLICY activity_hourly_tenant_guard ON activity_hourly AS RESTRICTIVE TO companion_app
    USING (
        (companion_id = app_companion_id() AND app_user_in_scope(user_id))
        OR (
            app_companion_id() IS NULL
            AND companion_id IN (SELECT c.id FROM companions c WHERE c.owner_id = app_owner_id())
        )
    )
    WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id));

-- Rows are counted up (INSERT ... ON CONFLICT DO UPDATE) and erased with their user (DELETE).
GRANT SELECT, INSERT, UPDATE, DELETE ON activity_hourly TO companion_app;
