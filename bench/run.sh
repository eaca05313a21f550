#!/usr/bin/env bash
# Builds nouvelhook (as it ships: CGO off), the verify-only baseline and the
# load driver, then runs the webhook benchmark. Extra arguments go to the
# driver, e.g.:
#   bash bench/run.sh                         # 64 conns, 3 alternating rounds of 10 s
#   bash bench/run.sh -conns 16 -dup 0.1      # other load shapes
#   bash bench/run.sh -profile /tmp/nh-prof   # CPU/block/mutex/heap profiles and a trace
#   bash bench/run.sh -targets sqlite,pg1,pg3 # also nouvelhook on Postgres, 1 and 3 replicas
#                                             # (schemas in $NOUVELHOOK_TEST_POSTGRES or -pg URL,
#                                             # default postgres://postgres@127.0.0.1:5432/test)
#   bash bench/run.sh forward                 # the forwarding benchmark instead (bench/forward):
#                                             # backlog drains on SQLite, ordered and Postgres, and
#                                             # ingest with forwarding on vs off; flags go to it
# Exit status: 0 all targets met, 1 a target or check failed, 2 the run failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BENCH_BIN:-$(mktemp -d "${TMPDIR:-/tmp}/nouvelhook-bench-bin.XXXXXX")}"
if [[ -z "${BENCH_BIN:-}" ]]; then
	trap 'rm -rf "$bin"' EXIT
fi
mkdir -p "$bin"

cd "$root"
echo "building into $bin ..." >&2
export CGO_ENABLED=0
go build -o "$bin/nouvelhook" ./cmd/nouvelhook
if [[ "${1:-}" == forward ]]; then
	shift
	go build -o "$bin/forward" ./bench/forward
	status=0
	"$bin/forward" -nouvelhook "$bin/nouvelhook" "$@" || status=$?
	exit "$status"
fi
go build -o "$bin/benchserve" ./bench/cmd/benchserve
go build -o "$bin/load" ./bench/cmd/load

"$bin/load" -nouvelhook "$bin/nouvelhook" -benchserve "$bin/benchserve" "$@"
