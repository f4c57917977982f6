#!/usr/bin/env bash
# The deploy test: builds the images, brings up deploy/compose.yaml (3 coordinator nodes, a KV
# bank, a PostgreSQL bank and its PostgreSQL), moves money between the two banks from the host
# while it `docker kill`s the leader and cuts a follower off the network, then checks with the
# ledger checker (`verdict bank exercise`) that no transfer is lost or half-applied, that
# PostgreSQL holds nothing prepared, and that every node holds the same records. Tears
# everything down (containers, volumes, network) whatever happens; prints every container's
# log when a step fails.
#
#   deploy/test.sh            # needs a Docker engine; prints SKIPPED and exits 0 without one
#
# No image can be pulled here, so the base image `debian:bookworm-slim` is made locally when
# missing: a minimal Debian root file system by debootstrap (cached as a tarball under
# ~/.cache/verdict-deploy), imported with `docker import`. The verdict image is the runtime
# stage of deploy/Dockerfile with the binary built on the host by cargo copied in.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "deploy-test: $*" >&2; }
started=$SECONDS

if ! docker info >/dev/null 2>&1; then
    echo "deploy-test: SKIPPED — no Docker engine answers (docker info failed); nothing was tested"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    say "neither 'docker compose' nor 'docker-compose' is installed"
    exit 1
fi

bin=${CARGO_TARGET_DIR:-target}/release/verdict
project=verdict-deploy-test
export VERDICT_N1_PORT=17401 VERDICT_N2_PORT=17402 VERDICT_N3_PORT=17403
export VERDICT_KV_BANK_PORT=17501 VERDICT_PG_BANK_PORT=17502
export VERDICT_PG_PASSWORD=deploy-test
compose() { "${compose_cmd[@]}" -p "$project" -f deploy/compose.yaml "$@"; }
coordinators=http://127.0.0.1:17401,http://127.0.0.1:17402,http://127.0.0.1:17403
banks=(--bank http://127.0.0.1:17501 --bank http://127.0.0.1:17502)

# --- images -----------------------------------------------------------------------------------
base_image() {
    if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
        say "base image debian:bookworm-slim present"
        return
    fi
    local cache=${XDG_CACHE_HOME:-$HOME/.cache}/verdict-deploy
    local tarball=$cache/debian-bookworm-minbase.tar
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || {
            say "installing debootstrap"
            apt-get install -y -qq debootstrap >&2
        }
        say "making a Debian bookworm root file system with debootstrap (once; cached)"
        local root
        root=$(mktemp -d)
        debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >&2
        mkdir -p "$cache"
        tar -C "$root" -cf "$tarball.partial" .
        mv "$tarball.partial" "$tarball"
        rm -rf "$root"
    fi
    say "importing it as debian:bookworm-slim"
    docker import -c 'CMD ["bash"]' "$tarball" debian:bookworm-slim >/dev/null
}

verdict_image() {
    cargo build --release --bin verdict >&2
    local context
    context=$(mktemp -d)
    cp "$bin" "$context/verdict"
    # The runtime stage, unchanged but for where the binary comes from.
    sed -n '/^FROM .* AS runtime$/,$p' deploy/Dockerfile |
        sed 's#^COPY --from=builder /usr/local/bin/verdict #COPY verdict #' > "$context/Dockerfile"
    grep -q '^COPY verdict /usr/local/bin/verdict$' "$context/Dockerfile" || {
        say "deploy/Dockerfile's runtime stage no longer copies the binary from the builder"
        exit 1
    }
    docker build -q -t verdict:latest "$context" >/dev/null
    rm -rf "$context"
}

# --- teardown and diagnosis -------------------------------------------------------------------
finish() {
    local status=$?
    if [ "$status" != 0 ]; then
        say "FAILED (exit $status): every container's log follows"
        compose logs --no-color --tail 200 >&2 || true
    fi
    compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    rm -f "${exercise_out:-}"
    say "torn down after $((SECONDS - started)) s"
}

# --- helpers ----------------------------------------------------------------------------------
container() { compose ps -q "$1"; }

status_json() { "$bin" cluster status --coordinator "$coordinators" --json "$@" 2>/dev/null; }

# The leader's node id once the nodes name one other than $1 (empty if none within 30 s).
leader() {
    local deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        local id
        id=$(status_json | python3 -c 'import json,sys; l=json.load(sys.stdin)["leader"]; print(l if l else "")' 2>/dev/null || true)
        [ -n "$id" ] && [ "$id" != "${1:-}" ] && { echo "$id"; return; }
        sleep 0.2
    done
}

# Waits until every service named is healthy.
await_healthy() {
    local deadline=$((SECONDS + 120))
    for service in "$@"; do
        until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(container "$service")")" = healthy ]; do
            [ $SECONDS -lt $deadline ] || { say "$service never became healthy"; return 1; }
            sleep 0.5
        done
    done
}

# --- the test ---------------------------------------------------------------------------------
t0=$SECONDS
base_image
verdict_image
say "building verdict-postgres:15 (Debian's postgresql package on the same base)"
docker build -q -t verdict-postgres:15 deploy/postgres >/dev/null
say "images ready in $((SECONDS - t0)) s"

# The StatefulSet's command line, on the image as Kubernetes runs it: non-root, read-only root
# file system, node id from the pod's ordinal.
k8s_command_check() {
    local command name=verdict-k8s-check
    command=$(sed -n 's/^ *command: \(\[.*\]\)$/\1/p' deploy/k8s/statefulset.yaml)
    docker rm -f "$name" >/dev/null 2>&1 || true
    python3 -c 'import json,sys; print("\0".join(json.loads(sys.argv[1])), end="")' "$command" |
        xargs -0 docker run -d --name "$name" --hostname verdict-2 --read-only \
            --tmpfs /data:uid=10001,gid=10001 --entrypoint "" \
            -e VERDICT_PEERS=1=http://verdict-0:7400,2=http://verdict-1:7400,3=http://verdict-2:7400 \
            verdict:latest >/dev/null
    local deadline=$((SECONDS + 30)) ok=""
    while [ $SECONDS -lt $deadline ]; do
        docker exec "$name" verdict health >/dev/null 2>&1 && { ok=1; break; }
        sleep 0.5
    done
    local logs
    logs=$(docker logs "$name" 2>&1)
    docker rm -f "$name" >/dev/null
    [ -n "$ok" ] && grep -q 'node_id=3' <<<"$logs" || {
        echo "$logs" >&2
        say "the StatefulSet's command did not start node 3 from pod verdict-2"
        return 1
    }
    say "the StatefulSet's command starts pod verdict-2 as node 3 (non-root, read-only root)"
}
k8s_command_check

trap finish EXIT
compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
compose up -d --no-build >&2
await_healthy n1 n2 n3 postgres kv-bank pg-bank
say "cluster up and healthy $((SECONDS - t0)) s after the start"

exercise_out=$(mktemp)
"$bin" bank exercise --coordinator "$coordinators" "${banks[@]}" \
    --duration 40s --workers 8 --patience 90s > "$exercise_out" 2>&1 &
exercise=$!

sleep 8   # load running before the first fault
killed=$(leader)
[ -n "$killed" ] || { say "no leader before the kill"; exit 1; }
say "docker kill n$killed (the leader) under load"
docker kill "$(container "n$killed")" >/dev/null
new=$(leader "$killed")
[ -n "$new" ] || { say "no new leader within 30 s of the kill"; exit 1; }
say "n$new leads now; starting n$killed again"
docker start "$(container "n$killed")" >/dev/null
await_healthy "n$killed"

sleep 4   # load running again between the faults
lead=$(leader)
cut=$(( lead % 3 + 1 ))
network=${project}_verdict
say "docker network disconnect n$cut (a follower) for 6 s"
docker network disconnect "$network" "$(container "n$cut")"
sleep 6   # the length of the partition
docker network connect --alias "n$cut" "$network" "$(container "n$cut")"
say "n$cut reconnected"

if ! wait "$exercise"; then
    cat "$exercise_out" >&2
    say "the ledger checker found violations (or could not run)"
    exit 1
fi
summary=$(tail -n 1 "$exercise_out")
say "$summary"
committed=$(sed -n 's/.* committed \([0-9]*\) .*/\1/p' <<<"$summary")
[ "${committed:-0}" -gt 0 ] || { say "no transfer committed"; exit 1; }

# The other ways in from the host: the demo's transfers, and a short benchmark, both between
# the KV and the PostgreSQL bank.
demo=$("$bin" demo --coordinator "$coordinators" "${banks[@]}" 2>&1) || {
    echo "$demo" >&2; say "verdict demo through the cluster failed"; exit 1; }
grep -q 'Committed' <<<"$demo" && grep -q 'Aborted: participant .* voted no' <<<"$demo" || {
    echo "$demo" >&2; say "verdict demo did not commit and abort as it should"; exit 1; }
say "verdict demo through the cluster: $(grep -c Committed <<<"$demo") committed, 1 aborted (overdraft)"
"$bin" bench --coordinator "$coordinators" --participant http://127.0.0.1:17501 \
    --participant http://127.0.0.1:17502 --workload bank --concurrency 16 --warmup 1s \
    --duration 5s 2>/dev/null | sed -n '1,6p' >&2

prepared=$(docker exec "$(container postgres)" psql -h /tmp -U verdict -d bank -tAc \
    "SELECT count(*) FROM pg_prepared_xacts")
[ "$prepared" = 0 ] || { say "PostgreSQL still holds $prepared prepared transactions"; exit 1; }
say "PostgreSQL holds no prepared transaction"

# Every node applies the same entries: once quiet, the same records at the same index.
agreed=""
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
    agreed=$(status_json --digest | python3 -c '
import json, sys
nodes = json.load(sys.stdin)["nodes"]
digests = [json.dumps(n.get("digest"), sort_keys=True) for n in nodes]
ok = len(nodes) == 3 and all("error" not in n for n in nodes) and len(set(digests)) == 1
print(digests[0] if ok else "")' 2>/dev/null || true)
    [ -n "$agreed" ] && break
    sleep 0.5
done
[ -n "$agreed" ] || { say "the nodes never held the same records"; status_json --digest >&2; exit 1; }
say "all 3 nodes hold the same records: $agreed"
say "PASSED: killed leader n$killed, disconnected follower n$cut; $summary; $((SECONDS - started)) s in all"
