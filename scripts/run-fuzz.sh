#!/bin/sh
# Run every libFuzzer target of a fuzz build for a bounded time each.
# Usage: scripts/run-fuzz.sh BUILD_DIR SECONDS
# Seeds come from tests/fuzz/corpus/<target>/; new inputs found go to
# BUILD_DIR/corpus/<target>/ (not committed). A crash fails the run and
# leaves the reproducer in BUILD_DIR/crashes/.
#
# Targets run side by side, one per core (FUZZ_JOBS overrides): each is
# single-threaded, so on CI's two cores nine targets take five rounds of
# SECONDS instead of nine.
set -eu

# One target: scripts/run-fuzz.sh --one BUILD_DIR SECONDS BINARY
if [ "${1:-}" = "--one" ]; then
	dir=$2
	secs=$3
	bin=$4
	src=$(cd "$(dirname "$0")/.." && pwd)
	name=$(basename "$bin")
	corpus="$dir/corpus/$name"
	mkdir -p "$corpus"
	seeds="$src/tests/fuzz/corpus/$name"
	[ -d "$seeds" ] || seeds=""
	# $seeds is one path or nothing: left unquoted so "nothing" adds no argument.
	# shellcheck disable=SC2086
	if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=0 \
		-artifact_prefix="$dir/crashes/$name-" "$corpus" $seeds >"$dir/$name.log" 2>&1; then
		{
			echo "fuzz: $name FAILED; see $dir/$name.log and $dir/crashes/"
			tail -n 30 "$dir/$name.log"
		} >&2
		exit 1
	fi
	echo "fuzz: $name for ${secs}s: $(grep -E '^#[0-9]+.*DONE' "$dir/$name.log" | tail -n 1)"
	exit 0
fi

dir=$1
secs=$2
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
mkdir -p "$dir/crashes"
found=0
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -x "$bin" ] && found=$((found + 1))
done
if [ "$found" -eq 0 ]; then
	echo "fuzz: no fuzz_* targets in $dir/tests/fuzz" >&2
	exit 1
fi
echo "fuzz: $found targets, ${secs}s each, $jobs at a time"
# xargs exits non-zero (123) when any target failed; each failure printed itself.
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -x "$bin" ] && printf '%s\n' "$bin"
done | xargs -P "$jobs" -I '{}' "$0" --one "$dir" "$secs" '{}'
