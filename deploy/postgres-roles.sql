-- Two PostgreSQL roles for the archiver: one that migrates (owns the tables: DDL), one that runs
-- (reads and writes rows, nothing else). Run once per database, as a superuser or the database's
-- owner, before the first `archiver db upgrade`:
--   psql -v ON_ERROR_STOP=1 -d archiver -f deploy/postgres-roles.sql
--   psql -d archiver -c "ALTER ROLE archiver_migrator PASSWORD '…'" -c "ALTER ROLE archiver_app PASSWORD '…'"
-- Then ARCHIVER_MIGRATIONS_DATABASE_URL=postgresql://archiver_migrator:…@host/archiver where
-- migrations run, and ARCHIVER_DATABASE_URL=postgresql://archiver_app:…@host/archiver everywhere.
-- Safe to run again.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'archiver_migrator') THEN
    CREATE ROLE archiver_migrator LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'archiver_app') THEN
    CREATE ROLE archiver_app LOGIN;
  END IF;
  -- Nobody else creates schemas or temporary tables in this database.
  EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO archiver_migrator, archiver_app', current_database());
END
$$;

-- Only the migrator creates objects in the schema (PostgreSQL before 15 let every role).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO archiver_migrator;
GRANT USAGE ON SCHEMA public TO archiver_app;

-- Rows, not structure: what the migrator creates from now on ...
ALTER DEFAULT PRIVILEGES FOR ROLE archiver_migrator IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO archiver_app;
ALTER DEFAULT PRIVILEGES FOR ROLE archiver_migrator IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO archiver_app;
-- ... and what already exists (a database migrated before these roles).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO archiver_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO archiver_app;
