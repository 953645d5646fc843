#!/bin/sh
# Run every test suite of a build tree through CTest and end with one line
# that counts every test. Usage: scripts/run-tests.sh BUILD_DIR [ctest args]
set -u
dir=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest --test-dir "$dir" -j "$(nproc 2>/dev/null || echo 2)" --output-on-failure \
	--timeout 900 "$@" 2>&1 | tee "$log"
line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
if [ -z "$line" ]; then
	echo "cm tests: FAIL (ctest printed no summary)"
	exit 1
fi
failed=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
total=$(echo "$line" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
if [ "$failed" -eq 0 ] && [ "$total" -gt 0 ]; then
	echo "cm tests: PASS, $total of $total tests passed ($dir)"
	exit 0
fi
echo "cm tests: FAIL, $failed of $total tests failed ($dir)"
exit 1
