#!/usr/bin/env bash
# Builds nouvelhook as it ships (CGO off) and runs the fan-out benchmark on it:
# webhook throughput with and without 2,000 subscribers, alternating rounds
# in one run. With BASE=<git ref> it also builds the binary at that ref (from
# `git archive`; the work tree is not touched) and measures both in the same
# run, rounds interleaved, so the two ratios compare. Extra arguments go to
# the driver (go run ./bench/fanout -help), e.g.:
#   bash bench/fanout/run.sh                      # 3 rounds of 10 s per kind, about 2 min
#   BASE=HEAD~5 bash bench/fanout/run.sh          # both binaries, about 4 min
#   bash bench/fanout/run.sh -sse 0 -event-polls 0 -job-polls 2000
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
base=()
if [[ -n "${BASE:-}" ]]; then
	mkdir "$tmp/base"
	git archive "$BASE" | tar -x -C "$tmp/base"
	(cd "$tmp/base" && go build -o "$tmp/nouvelhook-base" ./cmd/nouvelhook)
	base=(-base "$tmp/nouvelhook-base" -base-label "$BASE")
fi
"$tmp/fanout" -nouvelhook "$tmp/nouvelhook" -label "work tree" "${base[@]}" "$@"
