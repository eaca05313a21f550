#!/usr/bin/env bash
# Builds nouvelhook as it ships (CGO off) and runs the fan-out benchmark on it:
# webhook throughput with and without 2,000 idle subscribers, alternating
# rounds in one run. With BASE=<git ref> it first builds and measures the
# binary at that ref (from `git archive`, the work tree is not touched), so
# the two ratios can be compared. Extra arguments go to the driver, e.g.:
#   bash bench/fanout/run.sh                     # 3 rounds of 10 s per kind
#   BASE=HEAD~3 bash bench/fanout/run.sh -rounds 3
# Exit status: 0 every target met, 1 a target or check missed, 2 the run failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/nouvelhook-fanout-bin.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0

cd "$root"
echo "building into $tmp ..." >&2
go build -o "$tmp/nouvelhook" ./cmd/nouvelhook
go build -o "$tmp/fanout" ./bench/fanout
status=0
if [[ -n "${BASE:-}" ]]; then
	mkdir "$tmp/base"
	git archive "$BASE" | tar -x -C "$tmp/base"
	(cd "$tmp/base" && go build -o "$tmp/nouvelhook-base" ./cmd/nouvelhook)
	"$tmp/fanout" -nouvelhook "$tmp/nouvelhook-base" -label "base $BASE" "$@" || status=$?
	echo
fi
"$tmp/fanout" -nouvelhook "$tmp/nouvelhook" -label "work tree" "$@" || status=$?
exit "$status"
