-- Foundation: pgvector and the application role.
--
-- Runs as the schema owner (Aurora's master user, or companion_owner locally). The application
-- role owns nothing and never bypasses row-level security; it gets LOGIN and its password from
-- the migrate step (companion_memory.db.migrate.ensure_app_login), not from SQL in the repository.

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'companion_app') THEN
        CREATE ROLE companion_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO companion_app;

-- Tables and sequences created by later migrations are usable by the app role without a grant each;
-- ownership (and with it DDL and RLS bypass) stays with the owner.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO companion_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO companion_app;
