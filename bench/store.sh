#!/bin/sh
# store.sh: run bench/store-bench next to `openssl speed` and append a dated
# section to bench/RESULTS.md. Usage: bench/store.sh [path/to/store-bench]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$top/bench/store-bench}
out=${BENCH_DIR:-$top/bench/out/store}	# on the same disk as the repo
secs=${BENCH_SECONDS:-5}
rm -rf "$out"
mkdir -p "$out"
ossl=$(openssl speed -evp aes-256-gcm -bytes 1024 -seconds "$secs" \
    2>/dev/null | awk 'tolower($1) == "aes-256-gcm" { sub("k$", "", $2); print $2 }')
"$bin" -d "$out" -s "$secs" -o "${ossl:-0}" >"$out/section.md"
{
	printf '\n## Store: durable writes and sealing (%s)\n\n' "$(date -u +%Y-%m-%d)"
	printf 'CPU: %s; %s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
	    "$(openssl version)"
	cat "$out/section.md"
} >>"$top/bench/RESULTS.md"
cat "$out/section.md"
rm -rf "$out"
