#!/bin/bash
# What the compose file uses of the official postgres image's entrypoint, on Debian's PostgreSQL.
set -euo pipefail
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}" "${PGPORT:=5432}"
export PGPORT
mkdir -p "$PGDATA" && chown -R postgres "$PGDATA" && chmod 700 "$PGDATA"
as_pg() { runuser -u postgres -- env PATH="$PATH" PGPORT="$PGPORT" "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp) && echo "${POSTGRES_PASSWORD:-}" > "$pwfile" && chown postgres "$pwfile"
  as_pg initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-host=md5 --auth-local=trust
  rm -f "$pwfile"
  echo "host all all all md5" >> "$PGDATA/pg_hba.conf"
  as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses= -p $PGPORT" -w start
  if [ "$POSTGRES_DB" != postgres ]; then
    as_pg psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*.sql; do
    if [ -e "$f" ]; then as_pg psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f"; fi
  done
  as_pg pg_ctl -D "$PGDATA" -m fast -w stop
fi
if [ "${1:-postgres}" = postgres ]; then
  shift || true
  exec runuser -u postgres -- postgres -D "$PGDATA" -p "$PGPORT" -c listen_addresses='*' "$@"
fi
exec "$@"
