#!/bin/sh
# Run every libFuzzer target of a fuzz build for a bounded time each.
# Usage: scripts/run-fuzz.sh BUILD_DIR SECONDS
# Seeds come from tests/fuzz/corpus/<target>/; new inputs found go to
# BUILD_DIR/corpus/<target>/ (not committed). A crash fails the run and
# leaves the reproducer in BUILD_DIR/crashes/.
set -eu
dir=$1
secs=$2
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir/crashes"
status=0
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus="$dir/corpus/$name"
	mkdir -p "$corpus"
	seeds="$src/tests/fuzz/corpus/$name"
	[ -d "$seeds" ] || seeds=""
	echo "fuzz: $name for ${secs}s"
	if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=0 \
		-artifact_prefix="$dir/crashes/$name-" "$corpus" $seeds >"$dir/$name.log" 2>&1; then
		echo "fuzz: $name FAILED; see $dir/$name.log and $dir/crashes/" >&2
		tail -n 30 "$dir/$name.log" >&2
		status=1
	else
		grep -E '^#[0-9]+.*DONE' "$dir/$name.log" | tail -n 1 || true
	fi
done
exit $status
