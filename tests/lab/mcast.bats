#!/usr/bin/env bats
# cm-mcast on a lab of namespaces on a bridge: one sender, several
# receivers, loss injected with nftables on the receivers. Every received
# copy is compared by sha256 with the original.

load ../cli/helper
load lab

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
	# shellcheck disable=SC2034 # read by lab.bash
	LAB_PREFIX="mc$$$RANDOM"
	CH=239.192.77.9:7709
}

teardown() {
	lab_down
	# A test's small file system (no room), even when the test failed.
	if mountpoint -q "$T/r2"; then umount -l "$T/r2"; fi
}

# r2_on_1m: receiver r2's directory a 1 MiB tmpfs (teardown unmounts it).
r2_on_1m() {
	mkdir -p "$T/r2"
	mount -t tmpfs -o size=1m tmpfs "$T/r2"
}

# receivers N [options]: cm-mcast recv on hosts 2..N+1.
receivers() {
	local n=$1 i
	shift
	for i in $(seq 2 $((n + 1))); do
		mkdir -p "$T/r$i"
		lab_bg "$i" "$T/r$i.log" cm-mcast recv -v --interface "$(lab_ip "$i")" --channel "$CH" \
			--dir "$T/r$i" --id "r$i" "$@" >"$T/r$i.pid"
	done
	sleep 0.3
}

send() { # FILE [options]: from host 1, at SEND_RATE (200m)
	local f=$1
	shift
	lab_exec 1 cm-mcast send --interface "$(lab_ip 1)" --channel "$CH" --rate "${SEND_RATE:-200m}" "$@" "$f"
}

same() { # FILE N: every receiver's copy is identical
	local f=$1 n=$2 i want
	want=$(sha256sum "$f" | cut -d' ' -f1)
	for i in $(seq 2 $((n + 1))); do
		[ "$(sha256sum "$T/r$i/$(basename "$f")" | cut -d' ' -f1)" = "$want" ] || {
			echo "r$i differs"
			return 1
		}
	done
}

@test "four receivers, no loss: identical copies" {
	lab_up mc 5
	receivers 4
	head -c 10000000 /dev/urandom >f.bin
	run send f.bin --expect 4 --json
	assert_success
	same f.bin 4
	echo "$output" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["succeeded"] and j["passes"] >= 1, j'
}

@test "eight receivers, 2% loss each: identical copies" {
	lab_up mc 9
	receivers 8
	for i in $(seq 2 9); do lab_loss "$i" 2; done
	head -c 10000000 /dev/urandom >f.bin
	run send f.bin --expect 8 --json
	assert_success
	same f.bin 8
	echo "$output" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["passes"] >= 2 and j["retransmitted"] > 0, j'
}

@test "four receivers, 10% loss each: identical copies, with repair frames and without" {
	lab_up mc 5
	receivers 4
	for i in 2 3 4 5; do lab_loss "$i" 10; done
	head -c 5000000 /dev/urandom >f.bin
	# At 50 Mbit/s the loss is the 10 % injected: at 200, four receivers
	# slowed by sanitizers on two busy cores dropped whole blocks from full
	# socket buffers too, and a block someone lacks entirely goes again as
	# its own frames, not as repairs (a failure seen once under make asan).
	SEND_RATE=50m run send f.bin --expect 4 --json
	assert_success
	same f.bin 4
	# Repairs by default: fewer frames again than the receivers lost between
	# them (1 - 0.9^4 = 34 % of 3,444 frames, where one 10 % is 344).
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["repairs"] > 0 and r["repairs"] == r["retransmitted"], r
assert r["retransmitted"] < 0.25 * 3444, r'
	cp f.bin g.bin
	printf 'x' >>g.bin  # another file: the receivers have f.bin already
	SEND_RATE=50m run send g.bin --expect 4 --json --fec 0
	assert_success
	same g.bin 4
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["repairs"] == 0 and r["retransmitted"] > 0, r'
}

@test "zero-byte, one-block and exact-multiple files" {
	lab_up mc 4
	receivers 3
	: >empty
	printf 'x' >one
	head -c $((1451 * 4)) /dev/urandom >exact  # the default frame size for it (1500 - 28 - 21)
	for f in empty one exact; do
		run send "$f" --expect 3
		assert_success
		same "$f" 3
	done
}

@test "the command runs on each complete file and its output is reported" {
	lab_up mc 4
	receivers 3 --exec 'echo "{\"size\": $(stat -c %s {})}"'
	head -c 300000 /dev/urandom >f.bin
	run send f.bin --expect 3 --json
	assert_success
	echo "$output" | python3 -c '
import json, sys
j = json.load(sys.stdin)
for m in j["members"]:
    assert m["exit_code"] == 0 and m["output"] == {"size": 300000}, m'
	# A failing command fails the quorum (exit 6) and says so.
	lab_down
	rm -rf "$T/r2" "$T/r3"
	# shellcheck disable=SC2034 # read by lab.bash
	LAB_PREFIX="mc$$$RANDOM"
	lab_up mc 3
	receivers 2 --exec 'exit 3'
	run send f.bin --expect 2
	assert_failure 6
	assert_output --partial "command exit 3"
	# Output that is not UTF-8 (a Latin-1 file name) is carried, U+FFFD
	# for the bad byte: the report is still written.
	lab_down
	rm -rf "$T/r2" "$T/r3"
	# shellcheck disable=SC2034 # read by lab.bash
	LAB_PREFIX="mc$$$RANDOM"
	lab_up mc 2
	receivers 1 --exec 'printf "caf\351\n"'
	run send f.bin --expect 1 --json
	assert_success
	echo "$output" | python3 -c 'import json, sys; m = json.load(sys.stdin)["members"][0]; assert m["output"] == "caf\ufffd", m'
}

@test "a command that closes its output and runs on does not keep the receiver busy" {
	lab_up mc 2
	receivers 1 --exec 'exec >/dev/null; sleep 3; echo done >&2'
	head -c 100000 /dev/urandom >f.bin
	run send f.bin --expect 1 --report-timeout 20
	assert_success
	# The receiver waited 3 s for the command: CPU time, not wall time, is
	# what is bounded (a receiver polling the closed pipe spent all 3 s).
	local pid ticks
	pid=$(cat "$T/r2.pid")
	ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	[ "$ticks" -lt "$(getconf CLK_TCK)" ] || {
		echo "the receiver used $ticks ticks of CPU"
		return 1
	}
}

@test "the leader's own command (--self-exec) runs beside the session, not after it" {
	lab_up mc 4
	# Each member's command waits (at most 20 s) for the leader's to have
	# started: were the leader's run after the session, which waits for
	# the members' reports, they would time out and fail.
	receivers 3 --exec "for i in \$(seq 200); do [ -e '$T/self.started' ] && exit 0; sleep 0.1; done; exit 9"
	head -c 300000 /dev/urandom >f.bin
	run send f.bin --expect 3 --json --self-id leader \
		--self-exec "touch '$T/self.started'; echo '{\"self\": 1}'"
	assert_success
	echo "$output" | python3 -c '
import json, sys
j = json.load(sys.stdin)
ms = j["members"]
assert ms[0]["id"] == "leader" and ms[0]["output"] == {"self": 1} and ms[0]["succeeded"], ms[0]
assert len(ms) == 4 and all(m["exit_code"] == 0 for m in ms), ms'
}

@test "--follow: a file still being written is sent as it grows, and fails when it stops" {
	lab_up mc 4
	receivers 3
	mkdir out
	head -c 3000000 /dev/urandom >f.bin
	size=$(stat -c %s f.bin)
	sum=$(sha256sum f.bin | cut -d' ' -f1)
	# The writer: half now, the rest a second later, then the rename a
	# finished copy gets (as cm-push agent does).
	head -c 1500000 f.bin >out/f.bin.part
	(
		sleep 1
		tail -c +1500001 f.bin >>out/f.bin.part
		mv out/f.bin.part out/f.bin
	) &
	writer=$!
	run send out/f.bin --expect 3 --json --self-id leader --follow out/f.bin.part --size "$size" --sha256 "$sum" \
		--self-exec 'sha256sum {} | cut -c1-64 | sed "s/.*/\"&\"/"'
	wait "$writer"
	assert_success
	same f.bin 3
	echo "$output" | python3 -c '
import json, sys
j = json.load(sys.stdin)
ms = j["members"]
assert j["succeeded"] and ms[0]["id"] == "leader" and ms[0]["output"] == sys.argv[1], ms[0]' "$sum"
	# Renamed before the sender opens it (a fast fetch): sent whole, as a
	# file that does not change (exit 0, not 5).
	rm -f "$T"/r*/f.bin
	run send out/f.bin --expect 3 --follow out/f.bin.part --size "$size" --sha256 "$sum"
	assert_success
	same f.bin 3
	# A writer that stops: the sender gives up after --follow-idle.
	head -c 1000000 f.bin >out/g.part
	run send out/g --expect 3 --follow out/g.part --size "$size" --sha256 "$sum" --follow-idle 1
	assert_failure 1
	assert_output --partial "stopped growing at 1,000,000 of 3,000,000 bytes"
	run send out/g --expect 3 --follow out/g.part --size "$size"
	assert_failure 2
	assert_output --partial "--follow needs --size and --sha256"
}

@test "a received file is synced to disk before it takes its name" {
	lab_up mc 2
	head -c 3000000 /dev/urandom >f.bin
	mkdir -p "$T/r2"
	# strace -f: every fsync of the receiver, and of nothing else.
	# LeakSanitizer cannot run under ptrace (the ASan build of the tests).
	lab_bg 2 "$T/r2.log" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		strace -f -e trace=fsync,fdatasync -o "$T/sync2.txt" \
		cm-mcast recv -v --interface "$(lab_ip 2)" --channel "$CH" --dir "$T/r2" --id r2 >"$T/r2.pid"
	sleep 1
	run send f.bin --expect 1
	assert_success
	same f.bin 1
	# The receiver stops cleanly, and strace writes its log out.
	pkill -TERM -P "$(cat "$T/r2.pid")"
	wait_for 5 grep -q '+++ exited' "$T/sync2.txt"
	lab_down
	grep -q 'fsync(' "$T/sync2.txt" || {
		echo "no fsync:"
		cat "$T/sync2.txt"
		return 1
	}
}

@test "a receiver killed mid-transfer: the report names it, the quorum decides" {
	lab_up mc 5
	receivers 4
	head -c 40000000 /dev/urandom >f.bin
	(sleep 0.5; kill -9 "$(cat "$T/r2.pid")") &
	run send f.bin --expect 4 --max-idle-passes 2
	assert_failure 6
	assert_output --partial "r2"
	assert_output --regexp "r2 [0-9.:]+: (incomplete|missing)"
	same_others() { for i in 3 4 5; do cmp -s f.bin "$T/r$i/f.bin" || return 1; done; }
	same_others
	# With a quorum of 3 the same transfer succeeds.
	rm -f "$T"/r*/f.bin
	receivers 1
	(sleep 0.5; kill -9 "$(cat "$T/r2.pid")") &
	run send f.bin --expect 4 --quorum 3 --max-idle-passes 2
	assert_success
	# No partial file was left for a command to see.
	run ls -A "$T/r2"
	refute_output --partial "f.bin"
}

@test "a late joiner and a member that already has the file" {
	lab_up mc 4
	receivers 2
	head -c 20000000 /dev/urandom >f.bin
	# r3 had this file from before: it sits out.
	cp f.bin "$T/r3/f.bin"
	# r4 starts in the middle of the transfer.
	(sleep 0.4; mkdir -p "$T/r4"; lab_bg 4 "$T/r4.log" cm-mcast recv --interface "$(lab_ip 4)" --channel "$CH" --dir "$T/r4" --id r4 >/dev/null) &
	run send f.bin --expect 3 --json
	assert_success
	same f.bin 3
	echo "$output" | python3 -c '
import json, sys
j = json.load(sys.stdin)
m = {x["id"]: x for x in j["members"]}
assert m["r3"]["had_it"] and m["r4"]["received"], m'
}

@test "a member that has the file and whose 'I have it' is lost is still counted" {
	lab_up mc 3
	receivers 2
	head -c 300000 /dev/urandom >f.bin
	cp f.bin "$T/r3/f.bin"
	# The first unicast packet r3 sends the sender (its JOIN, 'I have
	# it', under 100 bytes) is dropped; later ones pass (the quota is used
	# up once a packet would go over it).
	ip netns exec "$(_lab_ns 3)" nft -f - <<EOF
table inet lab {
	chain out {
		type filter hook output priority 0;
		meta l4proto udp ip daddr $(lab_ip 1) quota until 100 bytes counter drop
	}
}
EOF
	run send f.bin --expect 2 --json
	assert_success
	echo "$output" | python3 -c '
import json, sys
m = {x["id"]: x for x in json.load(sys.stdin)["members"]}
assert m["r3"]["had_it"] and m["r2"]["received"], m'
	# The rule did drop a packet: the test is of the lost JOIN.
	run ip netns exec "$(_lab_ns 3)" nft list table inet lab
	assert_output --regexp "counter packets [1-9] "
}

@test "a wrong key: nothing is delivered, the packets are counted and dropped" {
	lab_up mc 3
	cm-assign keygen --encrypt -o good >/dev/null
	cm-assign keygen --encrypt -o bad >/dev/null
	receivers 2 --key good
	head -c 100000 /dev/urandom >f.bin
	run send f.bin --expect 2 --key bad --max-idle-passes 1 --report-timeout 1
	assert_failure 6
	[ ! -e "$T/r2/f.bin" ]
	run send f.bin --expect 2 --key good
	assert_success
	same f.bin 2
	kill -TERM "$(cat "$T/r2.pid")"
	sleep 0.5
	grep -E "dropped 0 malformed and [1-9][0-9]* unauthenticated" "$T/r2.log"
}

@test "garbage packets do not disturb a receiver" {
	lab_up mc 3
	receivers 1
	python3 - "$(lab_ip 2)" <<'PY' &
import os, random, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.77.1.13"))
end = time.time() + 2
while time.time() < end:
    n = random.randint(0, 1500)
    b = os.urandom(n)
    if random.random() < 0.5:
        b = b"CMMC\x01" + bytes([random.randint(0, 12), random.randint(0, 2)]) + os.urandom(8) + b
    s.sendto(b, ("239.192.77.9", 7709))
PY
	garbage=$!
	head -c 3000000 /dev/urandom >f.bin
	run send f.bin --expect 1
	wait $garbage || true
	assert_success
	same f.bin 1
	kill -0 "$(cat "$T/r2.pid")"
}

@test "a receiver without room for the file says so, takes nothing, and the others complete" {
	lab_up mc 4
	r2_on_1m
	receivers 2
	head -c 3000000 /dev/urandom >f.bin
	run send f.bin --expect 2 --quorum 1 --max-idle-passes 1 --report-timeout 1
	assert_success
	assert_output --partial "1 of 2 members OK (quorum 1): succeeded"
	assert_output --partial "1 more expected (--expect): never heard from"
	cmp f.bin "$T/r3/f.bin"
	grep -q "no room for f.bin (2.9 MiB) in $T/r2: .* free; not taking it" "$T/r2.log"
	# Said once, not at every announce; nothing partial left behind.
	[ "$(grep -c "no room for f.bin" "$T/r2.log")" = 1 ]
	[ "$(ls -A "$T/r2")" = .cm-mcast.lock ]
	kill -0 "$(cat "$T/r2.pid")"
}

@test "two files at once that fit one by one but not together: one is taken, one refused at its start" {
	lab_up mc 2
	r2_on_1m
	receivers 1
	head -c 700000 /dev/urandom >f1.bin
	head -c 700000 /dev/urandom >f2.bin
	# Slow enough that both sessions are announced before either ends.
	SEND_RATE=20m send f1.bin --expect 1 --max-idle-passes 1 --report-timeout 1 >s1.out 2>&1 &
	local p1=$!
	SEND_RATE=20m send f2.bin --expect 1 --max-idle-passes 1 --report-timeout 1 >s2.out 2>&1 &
	local p2=$! r1=0 r2=0
	wait "$p1" || r1=$?
	wait "$p2" || r2=$?
	# Exactly one succeeded, and its copy is whole.
	[ $((r1 == 0 ? 1 : 0)) -ne $((r2 == 0 ? 1 : 0)) ] || {
		cat s1.out s2.out "$T/r2.log"
		return 1
	}
	if [ "$r1" = 0 ]; then cmp f1.bin "$T/r2/f1.bin"; else cmp f2.bin "$T/r2/f2.bin"; fi
	# The other was refused when announced, not failed half-way.
	grep -q "no room for f[12].bin (.*) in $T/r2" "$T/r2.log"
	! grep -q "partial copy is removed" "$T/r2.log"
}

@test "a file rewritten in place while it is sent: exit 5 (changed), not a quorum failure" {
	lab_up mc 2
	receivers 1
	head -c 8000000 /dev/urandom >f.bin
	# The same size, other bytes, while pass 1 goes out at 20 Mbit/s.
	(sleep 1; head -c 8000000 /dev/urandom | dd of=f.bin conv=notrunc status=none) &
	local w=$!
	SEND_RATE=20m run send f.bin --expect 1
	wait "$w"
	assert_failure 5
	assert_output --partial "changed while it was sent"
}

@test "a file too large for one session is refused at once, before it is read" {
	# 20 GiB in 64-byte frames is more than the 2^28 frames a receiver keeps.
	truncate -s 20G huge.bin
	run timeout 10 cm-mcast send --interface 127.0.0.1 --expect 1 --frame-size 64 huge.bin
	assert_failure 2
	assert_output --partial "cannot send 'huge.bin': 20 GiB is more than one session carries (268435456 frames of 64 bytes)"
}

@test "--keep: the oldest received files go, files this daemon did not receive stay" {
	lab_up mc 3
	mkdir -p "$T/r2"
	echo "not received" >"$T/r2/notes.txt"
	receivers 1 --keep 2
	for i in 1 2 3 4; do
		head -c 3000 /dev/urandom >"f$i.bin"
		run send "f$i.bin" --expect 1
		assert_success
	done
	same f4.bin 1
	run ls "$T/r2"
	assert_output "$(printf 'f3.bin\nf4.bin\nnotes.txt')"
	python3 -c 'import json,sys; assert [bytes.fromhex(n).decode() for n in json.load(open(sys.argv[1]))] == ["f3.bin", "f4.bin"]' "$T/r2/.cm-mcast.received"
}
