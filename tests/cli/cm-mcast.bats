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
	# The quorum as cm-push and cm-sched read it (lib/util/quorum.cpp).
	run send --quorum 150%
	assert_failure 2
	assert_output --partial "bad quorum '150%': a count of 1 or more, or a percentage above 0 up to 100%"
	run send --quorum 1e1
	assert_failure 2
	assert_output --partial "bad quorum '1e1'"
	# Given but empty (an unset variable): a usage error, not all.
	run send --quorum ''
	assert_failure 2
	assert_output --partial "bad quorum '': empty"
	printf '{"members":[{"id":"a","address":"127.0.0.1"}]}' >members.json
	run cm-mcast send --interface 127.0.0.1 --members members.json --quorum 2 f
	assert_failure 2
	assert_output --partial "a quorum of 2 is more than the 1 members in --members"
	# A member whose id is empty could never join: malformed input.
	printf '{"members":[{"id":"a"},{"id":""}]}' >empty-id.json
	run timeout 10 cm-mcast send --interface 127.0.0.1 --members empty-id.json f
	assert_failure 3
	assert_output --partial "a member without an id"
}

# recv_bg DIR: a receiver on loopback, in the background (its pid in RECV).
recv_bg() {
	cm-mcast recv --interface 127.0.0.1 --channel 239.192.77.99:7799 --dir "$1" 2>"$T/recv.log" &
	RECV=$!
}

teardown() {
	if [ -n "${RECV:-}" ]; then kill "$RECV" 2>/dev/null || true; fi
	if [ -n "${MNT:-}" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
}

@test "one receiver a directory; part files a killed one left are removed at start" {
	mkdir in
	head -c 1000 /dev/urandom >in/.cm-mcast.00000000deadbeef.part
	echo keep >in/notes.txt
	recv_bg in
	for _ in $(seq 1 50); do [ -e in/.cm-mcast.00000000deadbeef.part ] || break; sleep 0.1; done
	[ ! -e in/.cm-mcast.00000000deadbeef.part ]
	[ -e in/notes.txt ]
	run timeout 10 cm-mcast recv --interface 127.0.0.1 --channel 239.192.77.99:7799 --dir in
	assert_failure 7
	assert_output --partial "'in' is taken by another cm-mcast recv"
	kill -0 "$RECV"
}

@test "a receive directory that cannot be written is an error at start, not per packet" {
	MNT=$T/ro
	mkdir "$MNT"
	mount -t tmpfs -o size=1m,ro tmpfs "$MNT"
	run timeout 10 cm-mcast recv --interface 127.0.0.1 --channel 239.192.77.99:7799 --dir "$MNT"
	assert_failure 1
	assert_output --partial "cannot create '$MNT/.cm-mcast.lock': Read-only file system"
	# One that is not there, or is a file: said as what it is.
	run timeout 10 cm-mcast recv --interface 127.0.0.1 --channel 239.192.77.99:7799 --dir "$T/nonesuch"
	assert_failure 1
	assert_output --partial "cannot use the receive directory '$T/nonesuch': No such file or directory"
	: >"$T/afile"
	run timeout 10 cm-mcast recv --interface 127.0.0.1 --channel 239.192.77.99:7799 --dir "$T/afile"
	assert_failure 1
	assert_output --partial "'$T/afile' is not a directory"
}

@test "an --interface address this host does not have is named as the problem" {
	mkdir in
	run timeout 10 cm-mcast recv --interface 192.0.2.77 --channel 239.192.77.99:7799 --dir in
	assert_failure 1
	assert_output --partial "on --interface 192.0.2.77: no interface of this host has that address"
}

@test "a --key that is no cm key is exit 4, for send and recv" {
	echo data >f
	head -c 100 /dev/urandom >rand.bin
	run cm-mcast send --interface 127.0.0.1 --expect 1 --key rand.bin f
	assert_failure 4
	assert_output --partial "'rand.bin' is not a cm key"
	run timeout 10 cm-mcast recv --interface 127.0.0.1 --dir in --key rand.bin
	assert_failure 4
	assert_output --partial "'rand.bin' is not a cm key"
	[ ! -e in ]
}
