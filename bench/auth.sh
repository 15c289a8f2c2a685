#!/bin/bash
# Authentication benchmark: authenticated GET /v1/me over TLS keep-alive,
# 64 connections (wrk -t2), tenantd with auth.provider: local.
#   (a) one token reused (verified-token cache hit) vs GET /livez,
#       alternating rounds in the same run; target >= 80 % of /livez.
#   (b) a distinct pre-minted token per request (an RSA verification each:
#       more tokens than the cache holds, cycled by a wrk Lua script) vs
#       `openssl speed rsa2048` verify/s in the same run; target >= 50 %.
#   bench/auth.sh [--no-record]
# Environment: TENANTD_BIN, TENANTCTL_BIN (default ./tenantd, ./tenantctl),
# BENCH_DURATION (10s), BENCH_ROUNDS (3), BENCH_CONNECTIONS (64),
# BENCH_TOKENS (24000; must exceed the cache of 8192 entries).
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
TENANTD_BIN=${TENANTD_BIN:-$PWD/tenantd}
TENANTCTL_BIN=${TENANTCTL_BIN:-$PWD/tenantctl}
DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-64}
NTOKENS=${BENCH_TOKENS:-24000}
THREADS=2
RESULTS=$srcdir/bench/RESULTS.md
record=1
case ${1:-} in
--no-record) record=0 ;;
"") ;;
*) echo "usage: bench/auth.sh [--no-record]" >&2; exit 2 ;;
esac

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
for t in wrk openssl curl /usr/bin/python3; do
	command -v "$t" >/dev/null || die "$t not found (tools/install-deps)"
done
[ -x "$TENANTD_BIN" ] && [ -x "$TENANTCTL_BIN" ] ||
	die "build tenantd and tenantctl first (or set TENANTD_BIN)"

work=$(mktemp -d /tmp/tenantd-bench-auth.XXXXXX)
TENANTD_PID=
cleanup() {
	if [ -n "$TENANTD_PID" ]; then
		kill -TERM "$TENANTD_PID" 2>/dev/null || true
		wait "$TENANTD_PID" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
	END { if (NR % 2) print v[(NR + 1) / 2];
	      else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 100 * a / b }'; }
metric() {
	curl -sk "https://127.0.0.1:$PORT/metrics" |
	    awk -v m="$1" '$1 == m { print $2 }'
}

# --- tenantd with the local provider --------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	-nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 0600 "$work/key.pem"
PORT=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -m 0700 "$work/state"
cat >"$work/tenantd.yaml" <<EOF
tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
state_dir: $work/state
log:
  level: warn
listen:
  - address: "127.0.0.1:$PORT"
tls:
  certificate: $work/cert.pem
  key: $work/key.pem
control:
  socket: $work/control.sock
vault:
  mode: external
  address: $work/vault.sock
auth:
  provider: local
EOF
"$TENANTD_BIN" -f -c "$work/tenantd.yaml" 2>>"$work/tenantd.log" &
TENANTD_PID=$!
for i in $(seq 200); do
	[ "$(curl -sk -o /dev/null -w '%{http_code}' \
	    "https://127.0.0.1:$PORT/livez")" = 200 ] && break
	kill -0 "$TENANTD_PID" 2>/dev/null ||
		{ tail "$work/tenantd.log" >&2; die "tenantd exited"; }
	sleep 0.1
done
ctl() { "$TENANTCTL_BIN" -s "$work/control.sock" "$@"; }
TOKEN=$(ctl token --user bench-cached --ttl 2h)
[ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer \
$TOKEN" "https://127.0.0.1:$PORT/v1/me")" = 200 ] ||
	die "/v1/me does not accept a tenantctl token"

# Distinct tokens: the claims of a tenantctl token with a new oid and
# name each, signed with the local provider's key (python3-jwt).
log "minting $NTOKENS tokens"
/usr/bin/python3 - "$work/state/auth-local-key.pem" "$TOKEN" "$NTOKENS" \
    >"$work/tokens" <<'EOF'
import sys, uuid, jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
# Parsed once: jwt.encode would parse (and check) a PEM on every call.
key = load_pem_private_key(open(sys.argv[1], "rb").read(), None)
header = jwt.get_unverified_header(sys.argv[2])
claims = jwt.decode(sys.argv[2], options={"verify_signature": False})
for i in range(int(sys.argv[3])):
    claims["oid"] = claims["sub"] = str(uuid.uuid4())
    claims["preferred_username"] = claims["name"] = "bench-%d" % i
    print(jwt.encode(claims, key, algorithm="RS256",
                     headers={"kid": header["kid"]}))
EOF
# Requests are formatted once in init: formatting per request in Lua
# would make wrk, on the same CPUs, the bottleneck.
cat >"$work/tokens.lua" <<EOF
-- Thread i of $THREADS sends tokens i, i+$THREADS, ... in a cycle.
local n = 0
function setup(thread)
	thread:set("id", n)
	n = n + 1
end
function init(args)
	reqs, next_req = {}, 1
	local i = 0
	for line in io.lines("$work/tokens") do
		if i % $THREADS == id then
			reqs[#reqs + 1] = wrk.format("GET", "/v1/me",
			    { ["Authorization"] = "Bearer " .. line })
		end
		i = i + 1
	end
end
function request()
	local r = reqs[next_req]
	next_req = next_req % #reqs + 1
	return r
end
EOF

# run_wrk URL DURATION [wrk args]: prints requests/s.
run_wrk() {
	local url=$1 d=$2 out
	shift 2
	out=$(wrk -t$THREADS -c"$CONNS" -d"$d" "$@" "$url") ||
		die "wrk failed: $out"
	echo "$out" >>"$work/wrk.log"
	if echo "$out" | grep -Eq 'Non-2xx|Socket errors'; then
		echo "$out" >&2
		die "$url: wrk saw errors"
	fi
	echo "$out" | awk '/^Requests\/sec:/ { print $2 }'
}

openssl_verify() {
	openssl speed -seconds 3 rsa2048 2>/dev/null |
	    awk '/^rsa 2048 bits/ { print $NF }'
}

# --- run ---------------------------------------------------------------------
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
me=https://127.0.0.1:$PORT/v1/me
livez=https://127.0.0.1:$PORT/livez
auth=(-H "Authorization: Bearer $TOKEN")
run_wrk "$me" 2s "${auth[@]}" >/dev/null	# warm-up
hit=() live=() miss=() ossl=()
for r in $(seq "$ROUNDS"); do
	hit+=("$(run_wrk "$me" "$DURATION" "${auth[@]}")")
	live+=("$(run_wrk "$livez" "$DURATION")")
	checks0=$(metric tenantd_auth_signature_checks_total)
	miss+=("$(run_wrk "$me" "$DURATION" -s "$work/tokens.lua")")
	checks1=$(metric tenantd_auth_signature_checks_total)
	ossl+=("$(openssl_verify)")
	log "round $r: cached ${hit[-1]}, livez ${live[-1]}, distinct" \
	    "${miss[-1]} req/s ($((checks1 - checks0)) RSA checks)," \
	    "openssl ${ossl[-1]} verify/s"
done
hit_med=$(median "${hit[@]}") live_med=$(median "${live[@]}")
miss_med=$(median "${miss[@]}") ossl_med=$(median "${ossl[@]}")
hit_pct=$(pct "$hit_med" "$live_med")
miss_pct=$(pct "$miss_med" "$ossl_med")
hits=$(metric tenantd_auth_cache_hits_total)
checks=$(metric tenantd_auth_signature_checks_total)
bindir=$(dirname "$TENANTD_BIN")
commit=$(git -C "$bindir" rev-parse --short HEAD 2>/dev/null || echo "?")
build=$(sed -n 's/^CFLAGS = //p' "$bindir/Makefile" 2>/dev/null || true)

# --- report ------------------------------------------------------------------
verdict() { [ "$1" -ge "$2" ] && echo "met" || echo "NOT met"; }
join() { local IFS=/; echo "$*"; }
report() {
	echo
	echo "## Authentication: GET /v1/me ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "- kernel $(uname -r); CPU $(awk -F': ' '/^model name/ \
{ print $2; exit }' /proc/cpuinfo); nproc $(nproc); load average before" \
	    "the run $loadavg"
	echo "- tenantd commit $commit (CFLAGS ${build:-?}), auth.provider" \
	    "local (RS256, 2048-bit key); $(openssl version)"
	echo "- wrk -t$THREADS -c$CONNS -d$DURATION over TLS with keep-alive" \
	    "on 127.0.0.1, client and server on the same CPUs; $ROUNDS rounds;" \
	    "distinct tokens: $NTOKENS, cycled per wrk thread (the cache holds" \
	    "8192)"
	echo
	echo "| measure | median | rounds |"
	echo "| --- | ---: | ---: |"
	echo "| (a) /v1/me, one token (cache hit), req/s | $hit_med |" \
	    "$(join "${hit[@]}") |"
	echo "| /livez, req/s | $live_med | $(join "${live[@]}") |"
	echo "| (b) /v1/me, a new token per request, req/s | $miss_med |" \
	    "$(join "${miss[@]}") |"
	echo "| openssl speed rsa2048, verify/s (one process) | $ossl_med |" \
	    "$(join "${ossl[@]}") |"
	echo
	echo "(a) $hit_pct % of /livez: target >= 80 % $(verdict \
"$hit_pct" 80). (b) $miss_pct % of openssl verify/s: target >= 50 %" \
	    "$(verdict "$miss_pct" 50). Over the run: $checks RSA" \
	    "verifications, $hits cache hits."
}
report
if [ "$record" = 1 ]; then
	report >>"$RESULTS"
	log "appended to $RESULTS"
fi
