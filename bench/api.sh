#!/bin/bash
# API benchmark, two comparisons in one run on the same machine:
#  1. single-event POST /v1/events at 64 connections over TLS with a valid
#     token (durable: 202 only after the commit, with aggregates and audit)
#     against PostgreSQL 15 (Debian), pgbench -c 64 doing the equivalent
#     single-row INSERT with synchronous_commit=on, in a throwaway cluster.
#  2. GET /v1/settings/tenant/{key} against nginx serving a static file of
#     the same size, both over TLS with keep-alive.
#   bench/api.sh [--no-record]
# Environment: TENANTD_BIN, TENANTCTL_BIN (default ./tenantd, ./tenantctl),
# BENCH_DURATION (10s), BENCH_ROUNDS (3), BENCH_CONNECTIONS (64),
# PG_BIN (/usr/lib/postgresql/15/bin), PG_USER (postgres).
# Appends a dated section to bench/RESULTS.md.
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
TENANTD_BIN=${TENANTD_BIN:-$PWD/tenantd}
TENANTCTL_BIN=${TENANTCTL_BIN:-$PWD/tenantctl}
NGINX=${NGINX:-/usr/sbin/nginx}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-postgres}
DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-64}
RESULTS=$srcdir/bench/RESULTS.md
record=1
case ${1:-} in
--no-record) record=0 ;;
"") ;;
*) echo "usage: bench/api.sh [--no-record]" >&2; exit 2 ;;
esac

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for t in wrk openssl curl /usr/bin/python3 "$NGINX" "$PG_BIN/initdb" \
    "$PG_BIN/pg_ctl" "$PG_BIN/pgbench" runuser; do
	command -v "$t" >/dev/null || die "$t not found (tools/install-deps)"
done
[ -x "$TENANTD_BIN" ] && [ -x "$TENANTCTL_BIN" ] ||
	die "build tenantd and tenantctl first (or set TENANTD_BIN)"

work=$(mktemp -d /tmp/tenantd-api-bench.XXXXXX)
chmod 0755 "$work"
NGINX_PID= TENANTD_PID= PG_STARTED=
stop_pid() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	stop_pid "$TENANTD_PID"
	stop_pid "$NGINX_PID"
	if [ -n "$PG_STARTED" ]; then
		runuser -u "$PG_USER" -- "$PG_BIN/pg_ctl" -D "$work/pg" \
		    -m immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
	END { if (NR % 2) print v[(NR + 1) / 2];
	      else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

wait_http() {
	local i
	for i in $(seq 300); do
		case $(curl -sk -o /dev/null -w '%{http_code}' "$1") in
		200|401) return 0 ;;
		esac
		sleep 0.1
	done
	die "$1 did not answer"
}

# run_wrk URL DURATION [SCRIPT]: prints requests/s; any error fails.
run_wrk() {
	local out
	out=$(wrk -t2 -c"$CONNS" -d"$2" ${3:+-s "$3"} "$1") ||
		die "wrk failed: $out"
	echo "$out" >>"$work/wrk.log"
	if echo "$out" | grep -Eq 'Non-2xx|Socket errors'; then
		echo "$out" >&2
		die "$1: wrk saw errors"
	fi
	echo "$out" | awk '/^Requests\/sec:/ { print $2 }'
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	-nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 0600 "$work/key.pem"

# --- tenantd ---------------------------------------------------------------
TENANTD_PORT=$(free_port)
mkdir -p "$work/state" && chmod 0700 "$work/state"
cat >"$work/tenantd.yaml" <<EOF
tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
state_dir: $work/state
log:
  level: warn
listen:
  - address: "127.0.0.1:$TENANTD_PORT"
    tls: true
tls:
  certificate: $work/cert.pem
  key: $work/key.pem
control:
  socket: $work/control.sock
auth:
  provider: local
vault:
  mode: external
  address: $work/vault.sock
EOF
"$TENANTD_BIN" -f -c "$work/tenantd.yaml" 2>>"$work/tenantd.log" &
TENANTD_PID=$!
base=https://127.0.0.1:$TENANTD_PORT
wait_http "$base/livez"
ctl() { "$TENANTCTL_BIN" -c "$work/tenantd.yaml" "$@"; }
user_token=$(ctl token --user bench-user --ttl 1h)
admin_token=$(ctl token --user bench-admin --roles admin --ttl 1h)

event='{"events":[{"name":"viewer.open","app":"ifc-viewer","props":{"mode":"3d"},"metrics":{"ms":12.5}}]}'
code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $user_token" \
	-H 'Content-Type: application/json' -d "$event" "$base/v1/events")
[ "$code" = 202 ] || die "POST /v1/events answered $code"
setting='{"value":{"theme":"dark","columns":3,"features":["a","b"]}}'
code=$(curl -sk -o /dev/null -w '%{http_code}' -X PUT \
	-H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' \
	-d "$setting" "$base/v1/settings/tenant/layout")
[ "$code" = 201 ] || die "PUT /v1/settings answered $code"

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$event'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $user_token"
EOF
cat >"$work/get.lua" <<EOF
wrk.headers["Authorization"] = "Bearer $user_token"
EOF

# --- nginx: the same bytes as the settings answer, as a static file --------
NGINX_PORT=$(free_port)
mkdir -p "$work/www" "$work/nginx-tmp"
curl -sk -H "Authorization: Bearer $user_token" \
	"$base/v1/settings/tenant/layout" >"$work/www/layout"
chmod -R a+rX "$work/www"
cat >"$work/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	default_type application/json;
	keepalive_requests 100000000;
	client_body_temp_path $work/nginx-tmp/body;
	proxy_temp_path $work/nginx-tmp/proxy;
	fastcgi_temp_path $work/nginx-tmp/fastcgi;
	uwsgi_temp_path $work/nginx-tmp/uwsgi;
	scgi_temp_path $work/nginx-tmp/scgi;
	server {
		listen 127.0.0.1:$NGINX_PORT ssl;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		root $work/www;
	}
}
EOF
"$NGINX" -e "$work/nginx-error.log" -c "$work/nginx.conf" \
	2>>"$work/nginx-error.log" &
NGINX_PID=$!
wait_http "https://127.0.0.1:$NGINX_PORT/layout"

# --- PostgreSQL 15: a throwaway cluster, run as $PG_USER -------------------
PG_PORT=$(free_port)
mkdir -p "$work/pg" "$work/pgsock"
chown "$PG_USER" "$work/pg" "$work/pgsock"
runuser -u "$PG_USER" -- "$PG_BIN/initdb" -D "$work/pg" -A trust \
	-U bench >/dev/null
runuser -u "$PG_USER" -- "$PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pgsock/pg.log" \
	-o "-p $PG_PORT -k $work/pgsock -c listen_addresses='' \
	-c synchronous_commit=on -c fsync=on -c max_connections=100" \
	-w start >/dev/null
PG_STARTED=1
psql_() { runuser -u "$PG_USER" -- psql -q -h "$work/pgsock" -p "$PG_PORT" \
	-U bench -d postgres "$@"; }
psql_ -c "CREATE TABLE events (id bigserial PRIMARY KEY, pseudonym text
	NOT NULL, name text NOT NULL, app text NOT NULL, ts timestamptz NOT
	NULL DEFAULT now(), props jsonb, metrics jsonb)"
cat >"$work/insert.sql" <<'EOF'
INSERT INTO events (pseudonym, name, app, props, metrics) VALUES
  ('p_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'viewer.open', 'ifc-viewer',
   '{"mode":"3d"}', '{"ms":12.5}');
EOF
chmod a+r "$work/insert.sql"
run_pgbench() {
	local out
	out=$(runuser -u "$PG_USER" -- "$PG_BIN/pgbench" -n -h "$work/pgsock" \
	    -p "$PG_PORT" -U bench -c "$CONNS" -j 2 -T "${1%s}" \
	    -f "$work/insert.sql" postgres 2>&1) || die "pgbench: $out"
	echo "$out" >>"$work/pgbench.log"
	echo "$out" | awk '/^tps = / { print $3 }'
}

# --- run -------------------------------------------------------------------
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
run_wrk "$base/v1/events" 2s "$work/post.lua" >/dev/null	# warm-up
run_pgbench 2s >/dev/null
run_wrk "$base/v1/settings/tenant/layout" 2s "$work/get.lua" >/dev/null
run_wrk "https://127.0.0.1:$NGINX_PORT/layout" 2s >/dev/null
ev=() pg=() st=() ng=()
for r in $(seq "$ROUNDS"); do
	ev+=("$(run_wrk "$base/v1/events" "$DURATION" "$work/post.lua")")
	pg+=("$(run_pgbench "$DURATION")")
	st+=("$(run_wrk "$base/v1/settings/tenant/layout" "$DURATION" \
	    "$work/get.lua")")
	ng+=("$(run_wrk "https://127.0.0.1:$NGINX_PORT/layout" "$DURATION")")
	log "round $r: events ${ev[-1]}/s, postgres ${pg[-1]} tps," \
	    "settings ${st[-1]}/s, nginx ${ng[-1]}/s"
done
ev_med=$(median "${ev[@]}") pg_med=$(median "${pg[@]}")
st_med=$(median "${st[@]}") ng_med=$(median "${ng[@]}")
ev_ratio=$(awk -v a="$ev_med" -v b="$pg_med" 'BEGIN { printf "%.2f", a / b }')
st_ratio=$(awk -v a="$st_med" -v b="$ng_med" 'BEGIN { printf "%.0f", 100 * a / b }')
stored=$(psql_ -At -c "SELECT count(*) FROM events")
log "events: tenantd $ev_med/s vs PostgreSQL $pg_med tps = ${ev_ratio}x" \
    "($stored rows inserted by pgbench)"
log "settings: tenantd $st_med/s vs nginx $ng_med/s = $st_ratio %"

[ "$record" = 1 ] || exit 0
bindir=$(dirname "$TENANTD_BIN")
commit=$(git -C "$bindir" rev-parse --short HEAD 2>/dev/null || echo "?")
build=$(sed -n 's/^CFLAGS = //p' "$bindir/Makefile" 2>/dev/null || true)
pgver=$("$PG_BIN/postgres" -V)
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
	echo
	echo "## API: events vs PostgreSQL, settings vs nginx ($(date -u +%Y-%m-%d), commit $commit)"
	echo
	echo "Machine: $(nproc) CPUs ($cpu), $(uname -sr); load before: $loadavg."
	echo "tenantd build CFLAGS: \`$build\`; $pgver; wrk -t2 -c$CONNS," \
	    "pgbench -c$CONNS -j2; $ROUNDS rounds of $DURATION, medians."
	echo
	echo "| test | tenantd | reference | ratio | target |"
	echo "|---|---:|---:|---:|---:|"
	echo "| single-event POST /v1/events, durable, TLS + token + audit | $ev_med events/s | PostgreSQL INSERT, synchronous_commit=on: $pg_med tps | ${ev_ratio}x | >= 1.0x |"
	echo "| GET /v1/settings/tenant/{key}, TLS + token | $st_med req/s | nginx static file: $ng_med req/s | $st_ratio % | >= 60 % |"
	echo
	echo "Rounds (events/s, tps, settings req/s, nginx req/s): ${ev[*]} | ${pg[*]} | ${st[*]} | ${ng[*]}."
} >>"$RESULTS"
log "appended to $RESULTS"
