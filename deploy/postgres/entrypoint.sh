#!/bin/sh
# Initializes the cluster on first start (user and database from POSTGRES_USER / POSTGRES_DB,
# password from POSTGRES_PASSWORD, required), then runs PostgreSQL in the foreground with
# two-phase commit enabled.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the password of $POSTGRES_USER}"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/tmp" -w start \
        >/dev/null
    createdb --username="$POSTGRES_USER" --host=/tmp "$POSTGRES_DB"
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "verdict-postgres: initialized $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec postgres -D "$PGDATA" \
    -c listen_addresses='*' \
    -c max_prepared_transactions="$MAX_PREPARED_TRANSACTIONS" \
    -c unix_socket_directories=/tmp
