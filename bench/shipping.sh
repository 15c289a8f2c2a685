#!/bin/sh
# Log shipping drain benchmark: queue 1,000,000 records, drain them to the
# Azure Monitor emulator (its own process), report records/s, tenantd's CPU
# seconds, bytes on the wire, and same-run references (the emulator's
# ceiling with pre-made batches, gzip -6 of audit-shaped JSON).
# Usage: bench/shipping.sh [RECORDS]; build with ./configure (no sanitizers).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SHIP_BENCH_RECORDS=${1:-1000000} exec /usr/bin/python3 "$here/ship-bench.py"
