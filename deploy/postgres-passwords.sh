#!/bin/bash
# Compose only, run once by the postgres image on its first start, after postgres-roles.sql: the
# passwords of the two archiver roles, from postgres.env. A missing or placeholder one stops it.
set -euo pipefail
for name in APP_DB_PASSWORD MIGRATOR_DB_PASSWORD; do
  value=${!name:-}
  if [ -z "$value" ] || [[ "${value,,}" == *change*me* ]]; then
    echo "postgres.env: set $name (not a placeholder)" >&2
    exit 1
  fi
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app="$APP_DB_PASSWORD" -v migrator="$MIGRATOR_DB_PASSWORD" <<'SQL'
ALTER ROLE archiver_app PASSWORD :'app';
ALTER ROLE archiver_migrator PASSWORD :'migrator';
SQL
