#!/bin/sh
# audit.sh: run bench/audit-bench (commit with/without the audit record,
# CSV export and verify rates next to raw LMDB and SHA-256 references) and
# append a dated section to bench/RESULTS.md. Usage: bench/audit.sh [BIN]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$top/bench/audit-bench}
out=${BENCH_DIR:-$top/bench/out/audit}	# on the same disk as the repo
n=${BENCH_RECORDS:-1000000}
rm -rf "$out"
mkdir -p "$out"
"$bin" -d "$out" -n "$n" >"$out/section.md.tmp"
{
	printf '\n## Audit trail (%s)\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'machine: %s, %s CPUs (%s); %s; commit %s\n\n' \
	    "$(uname -r)" "$(nproc)" \
	    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
	    "$(openssl version)" "$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')"
	cat "$out/section.md.tmp"
	printf '\nThe write-path figure is the proxy the issue allows while settings\ndo not exist: one durable store commit of a 1 KiB value with and without\nits audit record (5 interleaved rounds, one writer).\n'
} >"$out/section.md"
cat "$out/section.md" >>"$top/bench/RESULTS.md"
cat "$out/section.md"
rm -rf "$out"
