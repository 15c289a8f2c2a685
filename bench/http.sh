#!/bin/bash
# HTTP benchmark: tenantd's GET /livez against nginx serving a 2-byte file,
# both over TLS with keep-alive on loopback with the same certificate.
#   bench/http.sh [--nginx-only] [--no-record]
# wrk -t2 -c64 -d10s, alternating tenantd and nginx, 3 rounds each after a
# warm-up; reports the median requests/s, the ratio tenantd/nginx, tenantd's
# idle RSS and its time from exec to READY=1 (median of 3 starts), and
# appends a dated section to bench/RESULTS.md.
# Environment: TENANTD_BIN (default ./tenantd), BENCH_DURATION (10s),
# BENCH_ROUNDS (3), BENCH_CONNECTIONS (64), BENCH_LOG_LEVEL (warn: like
# nginx's access_log off, no line per request).
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
TENANTD_BIN=${TENANTD_BIN:-$PWD/tenantd}
NGINX=${NGINX:-/usr/sbin/nginx}
DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-64}
LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
RESULTS=$srcdir/bench/RESULTS.md
nginx_only=0 record=1
for a in "$@"; do
	case $a in
	--nginx-only) nginx_only=1; record=0 ;;
	--no-record) record=0 ;;
	*) echo "usage: bench/http.sh [--nginx-only] [--no-record]" >&2
	   exit 2 ;;
	esac
done

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for t in wrk openssl curl /usr/bin/python3 "$NGINX"; do
	command -v "$t" >/dev/null || die "$t not found (tools/install-deps)"
done
[ "$nginx_only" = 1 ] || [ -x "$TENANTD_BIN" ] ||
	die "$TENANTD_BIN: not executable (build first or set TENANTD_BIN)"

# nginx's workers run as nobody when started by root: a world-readable dir.
work=$(mktemp -d /tmp/tenantd-bench.XXXXXX)
chmod 0755 "$work"
# Our children still running; each is cleared once waited for, so that
# cleanup never signals a recycled pid.
NGINX_PID= TENANTD_PID= LISTENER_PID=
stop_pid() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	stop_pid "$TENANTD_PID"
	stop_pid "$LISTENER_PID"
	stop_pid "$NGINX_PID"
	if [ -n "${KEEP_BENCH_DIR:-}" ]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
	END { if (NR % 2) print v[(NR + 1) / 2];
	      else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# wait_http URL: poll until the server answers 200 (20 s at most).
wait_http() {
	local i
	for i in $(seq 200); do
		if [ "$(curl -sk -o /dev/null -w '%{http_code}' "$1")" = 200 ]
		then
			return 0
		fi
		sleep 0.1
	done
	die "$1 did not answer 200"
}

# --- certificate (shared by both servers) -------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	-nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 0600 "$work/key.pem"

# --- nginx ---------------------------------------------------------------
start_nginx() {
	NGINX_PORT=$(free_port)
	mkdir -p "$work/www" "$work/nginx-tmp"
	printf ok >"$work/www/livez"
	chmod -R a+rX "$work/www"
	# keepalive_requests: nginx closes a connection after 1000 requests by
	# default; tenantd does not, so both keep every connection open.
	cat >"$work/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	default_type text/plain;
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
	"$NGINX" -e "$work/nginx-error.log" -t -c "$work/nginx.conf" \
		>/dev/null 2>&1 || { cat "$work/nginx-error.log" >&2;
		die "nginx config test failed"; }
	"$NGINX" -e "$work/nginx-error.log" -c "$work/nginx.conf" \
		2>>"$work/nginx-error.log" &
	NGINX_PID=$!
	wait_http "https://127.0.0.1:$NGINX_PORT/livez"
	[ "$(curl -sk "https://127.0.0.1:$NGINX_PORT/livez")" = ok ] ||
		die "nginx does not serve the 2-byte file"
}

# --- tenantd -------------------------------------------------------------
write_tenantd_conf() {
	TENANTD_PORT=$(free_port)
	mkdir -p "$work/state"
	chmod 0700 "$work/state"
	cat >"$work/tenantd.yaml" <<EOF
tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
state_dir: $work/state
log:
  level: $LOG_LEVEL
listen:
  - address: "127.0.0.1:$TENANTD_PORT"
    tls: true
tls:
  certificate: $work/cert.pem
  key: $work/key.pem
control:
  socket: $work/control.sock
EOF
}

# start_tenantd: run tenantd with NOTIFY_SOCKET on our listener; sets
# TENANTD_PID and READY_MS (from just before exec to the READY=1 datagram).
start_tenantd() {
	local n=$1 sock=$work/notify.sock out=$work/ready.$1 t0 t1 i
	rm -f "$out" "$sock"
	/usr/bin/python3 "$srcdir/bench/notify-listen.py" "$sock" "$out" 60 &
	LISTENER_PID=$!
	for i in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || die "notify listener did not start"
	(
		echo "$EPOCHREALTIME" >"$work/exec.$n"
		NOTIFY_SOCKET=$sock exec "$TENANTD_BIN" -f \
			-c "$work/tenantd.yaml" 2>>"$work/tenantd.$n.log"
	) &
	TENANTD_PID=$!
	for i in $(seq 600); do
		[ -s "$out" ] && break
		kill -0 "$TENANTD_PID" 2>/dev/null || {
			tail -20 "$work/tenantd.$n.log" >&2
			die "tenantd exited before READY=1"; }
		sleep 0.05
	done
	[ -s "$out" ] || die "no READY=1 from tenantd in 30 s"
	t0=$(cat "$work/exec.$n"); t1=$(cat "$out")
	READY_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
	stop_pid "$LISTENER_PID"
	LISTENER_PID=
	wait_http "https://127.0.0.1:$TENANTD_PORT/livez"
}

stop_tenantd() {
	stop_pid "$TENANTD_PID"
	TENANTD_PID=
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# run_wrk URL DURATION: prints requests/s.
run_wrk() {
	local out
	out=$(wrk -t2 -c"$CONNS" -d"$2" "$1") || die "wrk failed: $out"
	echo "$out" >>"$work/wrk.log"
	# Errors would make a fast failure look like throughput.
	if echo "$out" | grep -Eq 'Non-2xx|Socket errors'; then
		echo "$out" >&2
		die "$1: wrk saw errors"
	fi
	echo "$out" | awk '/^Requests\/sec:/ { print $2 }'
}

# --- run -----------------------------------------------------------------
# Other work on the machine skews the numbers: record how busy it was.
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
start_nginx
log "nginx on 127.0.0.1:$NGINX_PORT"
nginx_url="https://127.0.0.1:$NGINX_PORT/livez"

ready=() rss_idle=
if [ "$nginx_only" = 0 ]; then
	write_tenantd_conf
	for n in 1 2 3; do
		start_tenantd "$n"
		ready+=("$READY_MS")
		log "tenantd start $n: READY=1 after $READY_MS ms"
		[ "$n" = 3 ] || stop_tenantd
	done
	tenantd_url="https://127.0.0.1:$TENANTD_PORT/livez"
	for i in $(seq 10); do curl -sk -o /dev/null "$tenantd_url"; done
	sleep 1
	rss_idle=$(rss_kib "$TENANTD_PID")
	log "tenantd idle RSS $rss_idle KiB"
	run_wrk "$tenantd_url" 2s >/dev/null	# warm-up
fi
run_wrk "$nginx_url" 2s >/dev/null

t_rps=() n_rps=()
for r in $(seq "$ROUNDS"); do
	if [ "$nginx_only" = 0 ]; then
		t_rps+=("$(run_wrk "$tenantd_url" "$DURATION")")
		log "round $r tenantd ${t_rps[-1]} req/s"
	fi
	n_rps+=("$(run_wrk "$nginx_url" "$DURATION")")
	log "round $r nginx ${n_rps[-1]} req/s"
done
n_med=$(median "${n_rps[@]}")
if [ "$nginx_only" = 0 ]; then
	t_med=$(median "${t_rps[@]}")
	ratio=$(awk -v a="$t_med" -v b="$n_med" 'BEGIN { printf "%.2f", a / b }')
	ready_med=$(median "${ready[@]}")
	rss_load=$(rss_kib "$TENANTD_PID")
	tenantd_version=$("$TENANTD_BIN" -V 2>&1 | head -1)
	bindir=$(dirname "$TENANTD_BIN")
	commit=$(git -C "$bindir" rev-parse --short HEAD 2>/dev/null || echo "?")
	build=$(sed -n 's/^CFLAGS = //p' "$bindir/Makefile" 2>/dev/null || true)
	stop_tenantd
fi

# --- report --------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
nginx_version=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
wrk_version=$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true)
openssl_version=$(openssl version)
join() { local IFS=/; echo "$*"; }

report() {
	echo
	echo "## $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- kernel $(uname -r); CPU $cpu; nproc $(nproc);" \
	    "load average before the run $loadavg"
	echo "- tenantd: ${tenantd_version:-not run} (commit ${commit:-?}," \
	    "CFLAGS ${build:-?});" \
	    "nginx: $nginx_version (nginx-light); $wrk_version; $openssl_version"
	echo "- wrk -t2 -c$CONNS -d$DURATION over TLS with keep-alive on" \
	    "127.0.0.1, same ECDSA P-256 certificate, client and servers on" \
	    "the same $(nproc) CPUs; $ROUNDS alternating rounds after a 2 s" \
	    "warm-up; tenantd log level $LOG_LEVEL, nginx access_log off"
	echo
	echo "| measure | tenantd | nginx |"
	echo "| --- | ---: | ---: |"
	echo "| requests/s, median | ${t_med:-n/a} | $n_med |"
	echo "| requests/s, rounds | $(join "${t_rps[@]:-n/a}") |" \
	    "$(join "${n_rps[@]}") |"
	echo "| ratio tenantd/nginx | ${ratio:-n/a} | |"
	echo "| idle RSS (KiB, after 10 requests) | ${rss_idle:-n/a} | |"
	echo "| RSS after the load (KiB) | ${rss_load:-n/a} | |"
	echo "| exec to READY=1 (ms), median | ${ready_med:-n/a} | |"
	echo "| exec to READY=1 (ms), 3 starts | $(join "${ready[@]:-n/a}") | |"
}

report
if [ "$record" = 1 ]; then
	[ -f "$RESULTS" ] || printf '# Benchmark results\n\nAppended by bench/http.sh.\n' >"$RESULTS"
	report >>"$RESULTS"
	log "appended to $RESULTS"
fi
