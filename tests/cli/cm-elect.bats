#!/usr/bin/env bats
# cm-elect as a program: its command line. Elections between hosts are in
# tests/lab/elect.bats.

load helper

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
