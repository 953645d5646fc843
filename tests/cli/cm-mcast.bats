#!/usr/bin/env bats
# cm-mcast as a program: its command line. Transfers (multicast between
# hosts, loss, keys, reports) are in tests/lab/mcast.bats.

load helper

@test "out-of-range options are usage errors before anything is sent" {
	echo data >f
	send() { cm-mcast send --interface 127.0.0.1 --expect 1 "$@" f; }
	run send --max-idle-passes 0
	assert_failure 2
	assert_output --partial "--max-idle-passes must be between 1 and 1000"
	run send --report-timeout -1
	assert_failure 2
	assert_output --partial "--report-timeout must be between 0 and 86400 seconds"
	run send --report-timeout 1e300
	assert_failure 2
	run send --report-timeout nan
	assert_failure 2
	assert_output --partial "--report-timeout must be a finite number (got 'nan')"
	run send --rate nan
	assert_failure 2
	assert_output --partial "--rate must be between 100k and 100g"
	run cm-mcast send --interface 127.0.0.1 --expect -1 f
	assert_failure 2
	assert_output --partial "--expect must not be negative (got '-1')"
	run send --frame-size 63
	assert_failure 2
}
