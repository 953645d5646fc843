#!/usr/bin/env bats
# cm-elect as a program: its command line. Elections between hosts are in
# tests/lab/elect.bats.

load helper
bats_require_minimum_version 1.5.0

@test "out-of-range options are usage errors before the daemon starts" {
	elect() { timeout 10 cm-elect run --interface 127.0.0.1 --id e1 --state-file st.json "$@"; }
	run elect --weight 5
	assert_failure 2
	assert_output --partial "--weight must be between 0 and 1"
	run elect --weight nan
	assert_failure 2
	run elect --port 70000
	assert_failure 2
	assert_output --partial "--port must be between 0 and 65535"
	run elect --port -1
	assert_failure 2
	assert_output --partial "--port must not be negative (got '-1')"
	run elect --vote-window -1
	assert_failure 2
	assert_output --partial "--vote-window must be between 0 and 60 seconds"
	run elect --report-delay -5
	assert_failure 2
	assert_output --partial "--report-delay must be between 0 and 3600 seconds"
	# Two ways of setting the priority at once: one would be silently unused.
	run elect --priority 5 --weight 0.5
	assert_failure 2
	assert_output --partial "--weight is for the measured priority, not with --priority"
	run elect --priority 5 --leaders e1,e2
	assert_failure 2
	assert_output --partial "--priority and --leaders are two ways"
	for bad in '' ',,' 'e1,,e2' 'e1,'; do
		run elect --leaders "$bad"
		assert_failure 2
		assert_output --partial "has an empty name"
	done
	run elect --caps '[1]'
	assert_failure 2
	assert_output --partial "--caps must be a JSON object"
	[ ! -e st.json ]
}

@test "stopped, a leader says so in its state file, and no hook outlives it" {
	port=$((20000 + RANDOM % 20000))
	cm-elect run --interface 127.0.0.1 --channel "239.192.98.$((RANDOM % 200 + 1)):$port" --id e1 \
		--interval 0.05 --state-file st.json --on-change 'sleep 31.5' 2>e1.log &
	pid=$!
	for _ in $(seq 1 100); do
		[ "$(python3 -c 'import json; print(json.load(open("st.json"))["state"])' 2>/dev/null)" = leader ] && break
		sleep 0.05
	done
	pgrep -f 'sleep 31.5' >/dev/null
	kill -TERM "$pid"
	run timeout 30 tail --pid="$pid" -f /dev/null
	assert_success
	wait "$pid"
	run ! pgrep -f 'sleep 31.5'
	[ "$(python3 -c 'import json; print(json.load(open("st.json"))["state"])')" = stopped ]
}

@test "a report the manager does not get is a warning, once, and so is its return; the daemon goes on" {
	port=$((20000 + RANDOM % 20000))
	# No -v: the warnings come at normal verbosity. Every report interval
	# retries while a way fails, without saying it again.
	cm-elect run --interface 127.0.0.1 --channel "239.192.98.$((RANDOM % 200 + 1)):$port" --id e1 \
		--interval 0.05 --report-interval 0.1 --state-file st.json \
		--report-to "$PWD/later/r.json" --report-cmd 'test -e ok' 2>e1.log &
	pid=$!
	for _ in $(seq 1 100); do
		[ "$(grep -c 'warning: the cluster report does not reach the manager' e1.log)" = 2 ] && break
		sleep 0.05
	done
	sleep 1 # about 10 report intervals
	run cat e1.log
	assert_line "cm-elect: warning: the cluster report does not reach the manager (--report-to $PWD/later/r.json): cannot create a temporary file for '$PWD/later/r.json': No such file or directory; trying again every report interval"
	assert_line "cm-elect: warning: the cluster report does not reach the manager (--report-cmd): 'test -e ok' exited with status 1; trying again every report interval"
	[ "${#lines[@]}" = 2 ]
	kill -0 "$pid"
	mkdir later
	touch ok
	for _ in $(seq 1 100); do
		[ "$(grep -c 'reaches the manager again' e1.log)" = 2 ] && break
		sleep 0.05
	done
	sleep 0.5
	run cat e1.log
	assert_line "cm-elect: the cluster report reaches the manager again (--report-to $PWD/later/r.json)"
	assert_line "cm-elect: the cluster report reaches the manager again (--report-cmd)"
	[ "${#lines[@]}" = 4 ]
	[ "$(python3 -c 'import json; print(json.load(open("later/r.json"))["state"])')" = leader ]
	kill -TERM "$pid"
	wait "$pid"
}

@test "a --key that is no cm key is exit 4, before the daemon starts" {
	head -c 100 /dev/urandom >rand.bin
	run timeout 10 cm-elect run --interface 127.0.0.1 --id e1 --state-file st.json --key rand.bin
	assert_failure 4
	assert_output --partial "'rand.bin' is not a cm key"
	: >empty.bin
	run timeout 10 cm-elect run --interface 127.0.0.1 --id e1 --state-file st.json --key empty.bin
	assert_failure 4
	# Larger than any key: not a key either (was exit 3, "malformed").
	head -c 5000 /dev/urandom >big.bin
	run timeout 10 cm-elect run --interface 127.0.0.1 --id e1 --state-file st.json --key big.bin
	assert_failure 4
	assert_output --partial "'big.bin' is not a cm key (larger than 4096 bytes)"
	[ ! -e st.json ]
}

@test "status: a state file that is not one, or has a field of the wrong type, is malformed (exit 3)" {
	echo '{"state":"leader","id":"a","priority":120,"updated_ms":0,"leader":{"id":"a","priority":120},"members":[]}' >ok.json
	run cm-elect status --state-file ok.json
	assert_success
	assert_line "a: leader, priority 120"
	echo garbage >bad.json
	run cm-elect status --state-file bad.json
	assert_failure 3
	assert_output --partial "is not a cm-elect state file"
	# Nothing printed before the error, no internal error.
	echo '{"state":"leader","priority":"high"}' >typed.json
	run --separate-stderr cm-elect status --state-file typed.json
	assert_failure 3
	[ -z "$output" ]
	# shellcheck disable=SC2154 # set by run --separate-stderr
	[[ "$stderr" == *"is not a cm-elect state file"* ]]
	[[ "$stderr" != *"internal error"* ]]
	echo '{"state":"leader","leader":{"id":7}}' >leader.json
	run cm-elect status --state-file leader.json
	assert_failure 3
}

@test "a peer it cannot send to is a warning, once; the daemon runs on and stops cleanly" {
	# 192.0.2.1 (TEST-NET-1) cannot be reached from a socket bound to
	# loopback: every send to it fails.
	run timeout -s TERM 2 cm-elect run --interface 127.0.0.1 --channel 239.192.77.99:7798 --id solo \
		--peer 127.0.0.1:7798 --peer 192.0.2.1:7798 --state-file "$BATS_TEST_TMPDIR/st.json"
	# Killed by timeout's SIGTERM (124): it did not exit on its own.
	assert_failure 124
	[ "$(grep -c "cannot send to '192.0.2.1:7798'" <<<"$output")" = 1 ]
	assert_output --partial "counted as lost, sending on"
	[ "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["state"])' "$BATS_TEST_TMPDIR/st.json")" = stopped ]
}
