#!/usr/bin/env bats
# cm-push as a program, on loopback addresses (127.0.0.x, no root): the
# site's keys, a manager and three agents, the report, resumable state,
# refused peers and hostile bytes. Multi-host behaviour (tbf links, kills,
# stalls) is in tests/lab/push.bats.

load helper
bats_require_minimum_version 1.5.0

PIDS=()

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
	PORT=$((20000 + RANDOM % 20000))
	APORT=$((PORT + 1))
	M="127.0.0.1:$PORT"
	SERVE_WRAP=()
}

teardown() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${MNT:-}" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
}

keys() {
	cm-push ca init "$T/tls"
	cm-push ca issue "$T/tls" manager l1 l2 l3
}

# serve [options]: the manager on 127.0.0.1:$PORT, state in $T/state
# (run under the command in SERVE_WRAP, when a test sets one).
serve() {
	"${SERVE_WRAP[@]}" cm-push serve --tls "$T/tls" --listen "$M" --state "$T/state" --agent-port "$APORT" "$@" 2>>"$T/serve.log" &
	PIDS+=($!)
	SERVE_PID=$!
	wait_port 127.0.0.1 "$PORT"
}

# agent N [options]: leader lN on 127.0.0.(10+N), copies in $T/aN; its
# deliver command checks the file and prints a one-member group report.
agent() {
	local n=$1
	shift
	cm-push agent --tls "$T/tls" --name "l$n" --listen "127.0.0.$((10 + n)):$APORT" --manager "$M" \
		--dir "$T/a$n" --idle 3 --deliver "${DELIVER:-$GOOD_DELIVER}" "$@" 2>>"$T/agent$n.log" &
	PIDS+=($!)
	wait_port "127.0.0.$((10 + n))" "$APORT"
}

# flood N: N idle TCP connections to the manager, kept open in FLOOD.
flood() {
	local i fd
	FLOOD=()
	for i in $(seq 1 "$1"); do
		exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
		FLOOD+=("$fd")
	done
}

# served_after_flood: the flood's connections closed, the manager serves
# again (once the handshakes it was in have failed).
served_after_flood() {
	local i fd
	for fd in "${FLOOD[@]}"; do exec {fd}>&-; done
	for i in $(seq 1 60); do
		cm-push status --tls "$T/tls" --manager "$M" >/dev/null 2>&1 && break
		sleep 0.5
	done
	run cm-push status --tls "$T/tls" --manager "$M"
	assert_success
}

wait_port() {
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "nothing listens on $1:$2" >&2
	return 1
}

GOOD_DELIVER='sha256sum {} >"$CM_FILE.delivered"; printf "{\"members\":[{\"id\":\"s1\",\"succeeded\":true}]}"'

leaders_file() {
	for n in "$@"; do echo "l$n 127.0.0.$((10 + n)):$APORT"; done >"$T/leaders"
}

three() {
	keys
	serve
	agent 1
	agent 2
	agent 3
	leaders_file 1 2 3
	head -c 3000000 /dev/urandom >"$T/site.pack"
}

@test "cm-push --help names every command; a bad command is a usage error" {
	run cm-push --help
	assert_success
	for c in serve agent send status report ca; do assert_output --partial "cm-push $c"; done
	run cm-push send --help
	assert_success
	assert_output --partial "--no-cut-through"
	assert_output --partial "--quorum"
	run -2 cm-push frobnicate
	run -2 cm-push send
	run -2 cm-push ca
}

@test "ca init and issue make a CA and certificates; keys are private; nothing is overwritten" {
	keys
	[ "$(stat -c %a "$T/tls/ca.key")" = 600 ]
	[ "$(stat -c %a "$T/tls/l1.key")" = 600 ]
	openssl verify -CAfile "$T/tls/ca.crt" "$T/tls/l1.crt"
	run openssl x509 -in "$T/tls/l2.crt" -noout -subject
	assert_output --partial "CN = l2"
	run -1 cm-push ca issue "$T/tls" l1
	assert_output --partial "exists"
	run -1 cm-push ca init "$T/tls"
	run -2 cm-push ca issue "$T/tls" ../evil
	# An unknown verb is named, whatever follows it; a known one with the
	# wrong operands shows its own usage.
	run -2 cm-push ca bogus
	assert_output --partial "unknown ca verb 'bogus'"
	run -2 cm-push ca bogus "$T/tls"
	assert_output --partial "unknown ca verb 'bogus'"
	run -2 cm-push ca init
	assert_output --partial "usage: cm-push ca init"
	run -2 cm-push ca issue "$T/tls"
	assert_output --partial "usage: cm-push ca issue DIR NAME"
	run -2 cm-push ca init --site '' "$T/tls-empty"
	assert_output --partial "--site must be 1 to 64 characters"
	[ ! -e "$T/tls-empty" ]
	# 64 characters of two bytes each: characters, not bytes, are counted.
	run cm-push ca init --site "$(printf 'é%.0s' $(seq 1 64))" "$T/tls-wide"
	assert_success
	run -2 cm-push ca init --site "$(printf 'é%.0s' $(seq 1 65))" "$T/tls-wider"
	assert_output --partial "--site must be 1 to 64 characters"
	run -1 cm-push ca issue "$T/nowhere" x
	assert_output --partial "$T/nowhere/ca.key"
	# A CA certificate that is not the CA key's (a leader's copied over
	# it): nothing is issued that would verify against nothing.
	cp -r "$T/tls" "$T/bad"
	cp "$T/tls/l1.crt" "$T/bad/ca.crt"
	run -4 cm-push ca issue "$T/bad" z4
	assert_output --partial "'$T/bad/ca.key' is not the key of '$T/bad/ca.crt'"
	[ ! -e "$T/bad/z4.crt" ]
	# An agent's --dir that is a file is refused at start.
	echo x >"$T/afile"
	run -1 cm-push agent --tls "$T/tls" --name l1 --listen "127.0.0.11:$APORT" --manager "$M" --dir "$T/afile"
	assert_output --partial "'$T/afile' is not a directory"
}

@test "send: every leader ends with an identical, delivered copy; the report says so" {
	three
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	assert_output --partial "3 of 3 leaders ok"
	assert_output --partial "servers 3 of 3 ok"
	want=$(sha256sum <"$T/site.pack")
	for n in 1 2 3; do
		[ "$(sha256sum <"$T/a$n/1/site.pack")" = "$want" ]
		[ -f "$T/a$n/1/site.pack.delivered" ]
		[ ! -e "$T/a$n/1/site.pack.part" ]
	done
	# The tree, not a star: leaders served leaders.
	grep -q 'l1 fetches from manager' "$T/serve.log"
	grep -Eq 'l[23] fetches from l[12]' "$T/serve.log"
}

@test "send --json: a report a script can read; status gives it back later" {
	three
	run cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["succeeded"] and r["done"] and r["leaders_ok"] == 3, r
assert r["bytes"] == 3000000 and len(r["sha256"]) == 64
assert [l["id"] for l in r["leaders"]] == ["l1", "l2", "l3"]
assert all(l["state"] == "delivered" and l["deliver_exit"] == 0 for l in r["leaders"])
assert r["leaders"][0]["source"] == "manager" and r["leaders"][1]["source"] == "l1"
assert r["servers"] == {"reported": 3, "ok": 3}'
	run cm-push status --json --tls "$T/tls" --manager "$M" 1
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["job"] == 1 and r["succeeded"]'
	run cm-push status --tls "$T/tls" --manager "$M"
	assert_success
	assert_output --partial "job 1 site.pack succeeded"
	run -1 cm-push status --tls "$T/tls" --manager "$M" 99
	assert_output --partial "no job 99"
	# Not a job number: a usage error, not read as 2^64 - 1 and asked for.
	run -2 cm-push status --tls "$T/tls" --manager "$M" -- -1
	assert_output --partial "'-1' is not a job number"
	for j in abc +1 ' 1' 1x '' 18446744073709551616; do
		run -2 cm-push status --tls "$T/tls" --manager "$M" -- "$j"
		assert_output --partial "'$j' is not a job number"
	done
}

@test "send: a small job goes to every leader from the manager at once (--star); --star 0 keeps the tree" {
	three
	head -c 20000 /dev/urandom >"$T/small"
	run cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/small"
	assert_success
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["succeeded"] and r["leaders_ok"] == 3, r
assert [l["source"] for l in r["leaders"]] == ["manager"] * 3, r["leaders"]'
	# 20 kB came with the notifications: no leader fetched it.
	for n in 1 2 3; do grep -q "the file came with the notification" "$T/agent$n.log"; done
	for n in 1 2 3; do [ "$(sha256sum <"$T/a$n/1/small")" = "$(sha256sum <"$T/small")" ]; done
	kill "$SERVE_PID"
	wait "$SERVE_PID" || true
	serve --star 0
	run cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/small"
	assert_success
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["succeeded"] and r["leaders_ok"] == 3, r
assert [l["source"] for l in r["leaders"]].count("manager") < 3, r["leaders"]'
}

@test "send --no-cut-through: the seed's whole-file tree gives the same copies" {
	three
	run cm-push send --no-cut-through --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	want=$(sha256sum <"$T/site.pack")
	for n in 1 2 3; do [ "$(sha256sum <"$T/a$n/1/site.pack")" = "$want" ]; done
}

@test "a deliver command that fails makes the job fail its quorum (exit 6), and a lower quorum passes" {
	keys
	serve
	agent 1
	DELIVER='echo broken >&2; exit 3' agent 2
	leaders_file 1 2
	head -c 100000 /dev/urandom >"$T/f"
	run -6 cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "1 of 2 leaders ok"
	assert_output --partial "deliver command exited 3"
	run cm-push send --quorum 50% --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_success
}

@test "cluster reports fill the registry; send --group picks the segment's leader" {
	keys
	serve
	agent 1
	agent 2
	for n in 1 2; do
		printf '{"format":1,"id":"l%s","state":"leader","segment":"seg%s","location":"here","leader":{"id":"l%s","priority":%s,"address":"127.0.0.%s","port":7701},"members":[]}' \
			"$n" "$n" "$n" "$((100 * n))" "$((10 + n))" >"$T/report$n.json"
		cm-push report --tls "$T/tls" --name "l$n" --manager "$M" "$T/report$n.json"
	done
	# One leader's certificate cannot report another leader: refused (exit
	# 4), the registry unchanged.
	printf '{"state":"leader","segment":"seg1","leader":{"id":"l1","address":"127.0.0.99"},"members":[]}' >"$T/forged.json"
	run -4 cm-push report --tls "$T/tls" --name l2 --manager "$M" "$T/forged.json"
	assert_output --partial "a report for leader 'l1' must come with its certificate, not 'l2'"
	# A member's report (not a leader) is accepted and ignored.
	echo '{"id":"s9","state":"member","leader":{"id":"l1"}}' | cm-push report --tls "$T/tls" --name l1 --manager "$M"
	run cm-push status --tls "$T/tls" --manager "$M"
	assert_output --partial "leader l1 127.0.0.11:$APORT segment seg1"
	assert_output --partial "leader l2 127.0.0.12:$APORT segment seg2"
	refute_output --partial "s9"
	echo hello >"$T/f"
	run cm-push send --json --group seg2 --tls "$T/tls" --manager "$M" "$T/f"
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert [l["id"] for l in r["leaders"]] == ["l2"], r'
	# Without --group: all, the higher priority first.
	run cm-push send --json --tls "$T/tls" --manager "$M" "$T/f"
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert [l["id"] for l in r["leaders"]] == ["l2","l1"], r'
	# A quorum over the leaders only the manager knows: a usage error, as
	# with --leaders.
	run -2 cm-push send --group seg2 --quorum 5 --tls "$T/tls" --manager "$M" "$T/f"
	assert_output --partial "a quorum of 5 is more than the 1 leader(s)"
	run -3 cm-push report --tls "$T/tls" --name l1 --manager "$M" <<<'not json'
}

@test "a peer whose certificate another CA signed is refused, and the manager carries on" {
	keys
	serve
	cm-push ca init "$T/other"
	cm-push ca issue "$T/other" manager
	echo data >"$T/f"
	leaders_file 1
	# A stranger that even trusts the site's CA is refused by the manager...
	run -4 cm-push send --ca "$T/tls/ca.crt" --cert "$T/other/manager.crt" --key "$T/other/manager.key" \
		--manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "refused this host"
	grep -q "refused: TLS handshake with .* certificate signature failure" "$T/serve.log"
	# ... and a manager the client's CA did not sign is refused by the client.
	cm-push ca init "$T/third"
	cm-push ca issue "$T/third" manager
	run -4 cm-push status --ca "$T/third/ca.crt" --cert "$T/third/manager.crt" --key "$T/third/manager.key" --manager "$M"
	assert_output --partial "TLS handshake"
	# An agent with a foreign certificate never receives: the manager
	# cannot notify it, and the report names it.
	cm-push ca issue "$T/other" l1
	cm-push agent --tls "$T/other" --name l1 --listen "127.0.0.11:$APORT" --manager "$M" --dir "$T/a1" 2>>"$T/agent1.log" &
	PIDS+=($!)
	wait_port 127.0.0.11 "$APORT"
	leaders_file 1
	run -6 cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "cannot notify"
	[ ! -e "$T/a1/1" ]
	kill -0 "$SERVE_PID"
}

@test "hostile bytes on the manager's port are refused with a clear error; the daemon lives" {
	three
	# Plain text instead of TLS, and a connection that says nothing.
	printf 'GET / HTTP/1.0\r\n\r\n' >"/dev/tcp/127.0.0.1/$PORT" || true
	timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; exec 3>&-"
	# Authenticated but malformed: a length of 2^31, then a truncated message.
	for bytes in '\x7f\xff\xff\xff' '\x00\x00\x00\x10\x0f{'; do
		printf "$bytes" | timeout 10 openssl s_client -quiet -connect "$M" -CAfile "$T/tls/ca.crt" \
			-cert "$T/tls/l1.crt" -key "$T/tls/l1.key" >/dev/null 2>&1 || true
	done
	sleep 0.5
	kill -0 "$SERVE_PID"
	grep -q "bad message from 'l1" "$T/serve.log"
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
}

@test "a flood of idle connections beyond the descriptors: the manager pauses, lives, and serves after" {
	keys
	# Few descriptors: the flood runs it out of them (accept fails EMFILE
	# while the connections stay queued).
	SERVE_WRAP=(prlimit --nofile=40:40)
	serve
	local t0 t1
	flood 80
	t0=$(awk '{ print $14 + $15 }' "/proc/$SERVE_PID/stat")
	sleep 2
	t1=$(awk '{ print $14 + $15 }' "/proc/$SERVE_PID/stat")
	kill -0 "$SERVE_PID"
	# CPU, not wall time, is bounded: a loop retrying accept at once burns
	# the whole 2 s; the daemon pauses between tries.
	[ $((t1 - t0)) -lt "$(getconf CLK_TCK)" ] || {
		echo "serve used $((t1 - t0)) ticks in 2 s"
		return 1
	}
	[ "$(grep -c "Too many open files" "$T/serve.log")" -le 4 ]
	served_after_flood
}

@test "one address cannot hold more than its share of the manager's connections" {
	keys
	serve
	local i
	flood 230
	for i in $(seq 1 50); do
		grep -q "more than 200 connections at once from 127.0.0.1" "$T/serve.log" && break
		sleep 0.1
	done
	grep -q "more than 200 connections at once from 127.0.0.1: its new ones are closed" "$T/serve.log"
	kill -0 "$SERVE_PID"
	served_after_flood
}

@test "a field of the wrong type is refused with a clear error; the manager lives" {
	keys
	serve
	agent 1
	leaders_file 1
	# A cluster report with a number where a name goes, and a null.
	run -1 cm-push report --tls "$T/tls" --name l1 --manager "$M" \
		<<<'{"state":"leader","leader":{"id":"l1","address":"127.0.0.50"},"segment":5}'
	assert_output --regexp "refused: malformed CLUSTER from l1 \(127.0.0.1:[0-9]+\): .*type must be string, but is number"
	run -1 cm-push report --tls "$T/tls" --name l1 --manager "$M" \
		<<<'{"state":"leader","location":null,"leader":{"id":"l1","address":"127.0.0.50"}}'
	kill -0 "$SERVE_PID"
	grep -q "malformed CLUSTER from l1 (127.0.0.1:[0-9]*)" "$T/serve.log"
	echo data >"$T/f"
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_success
}

@test "a deliver command's output that is not UTF-8 is carried, not fatal" {
	keys
	serve
	DELIVER='printf "caf\351\n"' agent 1
	leaders_file 1
	echo data >"$T/f"
	run cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert "caf\ufffd" in json.dumps(r["leaders"][0], ensure_ascii=False), r'
}

@test "a group report over a megabyte (a large segment's) is carried to the manager and back" {
	keys
	serve
	# 3 MB of report: 3000 members with a 1000-byte output each, as a
	# cm-mcast report of a large segment; 1 MiB was the limit before.
	DELIVER='python3 -c "import json; print(json.dumps({\"members\": [{\"id\": \"s%d\" % i, \"succeeded\": True, \"output\": \"x\" * 1000} for i in range(3000)]}))"' agent 1
	leaders_file 1
	echo data >"$T/f"
	run --separate-stderr cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["succeeded"] and r["servers"] == {"reported": 3000, "ok": 3000}, r["servers"]'
	run cm-push status --json --tls "$T/tls" --manager "$M" 1
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["servers"]["ok"] == 3000'
}

@test "a leader whose disk is full says so to the manager, which fails it at once" {
	keys
	serve
	MNT=$T/tiny
	mkdir "$MNT"
	mount -t tmpfs -o size=1m tmpfs "$MNT"
	cm-push agent --tls "$T/tls" --name l1 --listen "127.0.0.11:$APORT" --manager "$M" \
		--dir "$MNT" --idle 3 --deliver true 2>>"$T/agent1.log" &
	PIDS+=($!)
	wait_port 127.0.0.11 "$APORT"
	leaders_file 1
	head -c 3000000 /dev/urandom >"$T/f"
	run -6 cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "its copy failed: cannot write"
	assert_output --partial "No space left on device"
	# Failed for what it said, not for falling silent (the stall time).
	refute_output --partial "silent for"
	grep -q "No space left on device; giving this copy up" "$T/agent1.log"
}

@test "an agent told to stop stops its deliver commands too" {
	keys
	serve
	DELIVER='sleep 32.5; echo "{}"' agent 1
	AGENT_PID=${PIDS[-1]}
	leaders_file 1
	echo data >"$T/f"
	cm-push send --detach --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f" >/dev/null
	for _ in $(seq 1 100); do pgrep -f 'sleep 32.5' >/dev/null && break; sleep 0.05; done
	pgrep -f 'sleep 32.5' >/dev/null
	kill -TERM "$AGENT_PID"
	run timeout 30 tail --pid="$AGENT_PID" -f /dev/null
	assert_success
	# The group had SIGTERM; its sleep may be reaped a moment after the agent.
	for _ in $(seq 1 100); do pgrep -f 'sleep 32.5' >/dev/null || break; sleep 0.05; done
	run ! pgrep -f 'sleep 32.5'
	grep -q "stopping 1 deliver command" "$T/agent1.log"
}

@test "a restart of serve keeps its jobs and registry; job numbers go on" {
	three
	cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	kill "$SERVE_PID"
	wait "$SERVE_PID" || true
	serve
	run cm-push status --json --tls "$T/tls" --manager "$M" 1
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["succeeded"] and r["leaders_ok"] == 3'
	run cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["job"] == 2 and r["succeeded"]'
}

@test "a leader that cannot make its copy's directory says why at once; fixed, the next send succeeds" {
	keys
	serve
	agent 1
	leaders_file 1
	head -c 3000000 /dev/urandom >"$T/site.pack"
	# The job's directory cannot be made: the leader gives its copy up and
	# tells the manager, which fails it now (not after its stall time).
	mkdir -p "$T/a1"
	: >"$T/a1/1"
	run -6 cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_output --partial "its copy failed: cannot open '$T/a1/1/site.pack.part': Not a directory"
	refute_output --partial "silent for"
	grep -q "job 1: cannot open .*; giving this copy up" "$T/agent1.log"
	# With the disk fixed, the next job gets through.
	rm "$T/a1/1"
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	[ "$(sha256sum <"$T/a1/2/site.pack")" = "$(sha256sum <"$T/site.pack")" ]
}

@test "a copy changed on a leader's disk is not served: resumed fetches start at the first bad chunk" {
	three
	cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	# An agent restarted on a half-written copy keeps only the chunks that
	# check out, and fetches the rest.
	kill "${PIDS[1]}"
	wait "${PIDS[1]}" || true
	rm -rf "$T/a1"
	# (Made after the agent started: one found at start that the manager
	# does not name is removed, as the next test shows.)
	agent 1
	mkdir -p "$T/a1/2"
	head -c 1000000 "$T/site.pack" >"$T/a1/2/site.pack.part"
	printf 'garbage' | dd of="$T/a1/2/site.pack.part" bs=1 seek=600000 conv=notrunc 2>/dev/null
	leaders_file 1
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	[ "$(sha256sum <"$T/a1/2/site.pack")" = "$(sha256sum <"$T/site.pack")" ]
	grep -q "524288 bytes already here and good" "$T/agent1.log"
	# The same under the final name (the next job's number): the damaged
	# file goes back to being the part, and takes the name once whole.
	mkdir -p "$T/a1/3"
	head -c 1000000 "$T/site.pack" >"$T/a1/3/site.pack"
	printf 'garbage' | dd of="$T/a1/3/site.pack" bs=1 seek=600000 conv=notrunc 2>/dev/null
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	[ "$(sha256sum <"$T/a1/3/site.pack")" = "$(sha256sum <"$T/site.pack")" ]
	[ ! -e "$T/a1/3/site.pack.part" ]
	[ "$(grep -c "524288 bytes already here and good" "$T/agent1.log")" = 2 ]
}

@test "errors name what failed: a missing file, no leaders, an unreachable manager, a bad option" {
	keys
	serve
	run -1 cm-push send --tls "$T/tls" --manager "$M" --leaders /dev/null "$T/missing"
	assert_output --partial "$T/missing"
	echo x >"$T/f"
	run -3 cm-push send --tls "$T/tls" --manager "$M" --leaders /dev/null "$T/f"
	assert_output --partial "lists no leaders"
	run -1 cm-push send --tls "$T/tls" --manager "$M" "$T/f"
	assert_output --partial "no leaders to send to"
	run -1 cm-push status --tls "$T/tls" --manager "127.0.0.1:$((PORT + 2))"
	assert_output --partial "cannot connect"
	run -2 cm-push send --tls "$T/tls" --manager nowhere "$T/f"
	run -2 cm-push serve --tls "$T/tls" --listen "0.0.0.0:$((PORT + 3))" --state "$T/s2"
	assert_output --partial "--advertise"
	# A TLS file that is not there is a file error, named; one OpenSSL
	# cannot use is an authentication error.
	run -1 cm-push status --tls "$T/none" --manager "$M"
	assert_output --partial "cannot read the CA certificate '$T/none/ca.crt': No such file or directory"
	run -1 cm-push status --tls "$T/tls" --cert "$T/nope.crt" --manager "$M"
	assert_output --partial "cannot read the certificate '$T/nope.crt'"
	echo garbage >"$T/bad.crt"
	run -4 cm-push status --tls "$T/tls" --cert "$T/bad.crt" --manager "$M"
	assert_output --partial "cannot load the certificate '$T/bad.crt'"
	run -2 cm-push serve --tls "$T/tls" --fanout 0 --state "$T/s3"
	run -2 cm-push serve --tls "$T/tls" --star 1Q --state "$T/s3"
	assert_output --partial "bad size unit in '1Q' for --star"
	run -2 cm-push agent --tls "$T/tls" --manager "$M" --deliver-early
	assert_output --partial "--deliver-early needs --deliver"
	run -2 cm-push send --chunk-size 0 --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "--chunk-size must be between 4096 and 4194304 bytes"
	# A chunk goes in one message (8 MiB at most): 8 MiB chunks could never travel.
	run -2 cm-push send --chunk-size 8388608 --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "--chunk-size must be between 4096 and 4194304 bytes"
	leaders_file 1
	run -2 cm-push send --quorum 0 --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "bad quorum '0'"
	# Given but empty (an unset variable): a usage error, not all.
	run -2 cm-push send --quorum '' --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "bad quorum '': empty"
	run -2 cm-push send --quorum 5 --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	assert_output --partial "a quorum of 5 is more than the 1 leader(s)"
	run -2 cm-push send --quorum 150% --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/f"
	run -2 cm-push serve --tls "$T/tls" --listen "$M" --state "$T/st2" --agent-port 0
	assert_output --partial "--agent-port must be between 1 and 65535"
}

@test "only the manager may send a job: a leader's certificate is refused" {
	three
	run cm-push send --tls "$T/tls" --name l1 --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_failure 4
	assert_output --partial "only 'manager' may send a job, not 'l1'"
	for n in 1 2 3; do [ ! -e "$T/a$n/1" ]; done
	# The manager's own certificate: the job goes out.
	run cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/site.pack"
	assert_success
	assert_output --partial "3 of 3 leaders ok"
}

@test "serve --keep: finished jobs beyond the newest N are forgotten, their copies removed" {
	keys
	CM_TEST_PRUNE_GRACE_MS=0 serve --keep 2
	agent 1
	leaders_file 1
	for i in 1 2 3 4; do
		head -c 5000 /dev/urandom >"$T/job$i"
		cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/job$i"
	done
	# Pruned on the daemon's next tick (within a second).
	for _ in $(seq 1 50); do [ ! -e "$T/state/jobs/2.json" ] && break; sleep 0.1; done
	run ls "$T/state/jobs"
	assert_output "$(printf '3.chunks\n3.data\n3.json\n4.chunks\n4.data\n4.json')"
	run -1 cm-push status --tls "$T/tls" --manager "$M" 1
	assert_output --partial "no job 1"
	run cm-push status --tls "$T/tls" --manager "$M" 4
	assert_success
	# A restarted serve loads what was kept, and numbers go on.
	kill "$SERVE_PID"
	wait "$SERVE_PID" || true
	# ... and sweeps what a crash left without its state.
	echo stale >"$T/state/jobs/9.data"
	CM_TEST_PRUNE_GRACE_MS=0 serve --keep 2
	[ ! -e "$T/state/jobs/9.data" ]
	run cm-push send --json --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/job1"
	assert_success
	echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["job"] == 5 and r["succeeded"], r'
}

@test "an agent started over an earlier run's leftovers: a partial copy of a job not running goes, whole ones are pruned with the rest" {
	keys
	serve
	# What a killed agent left: a partial copy (job 7), a whole one (job 8),
	# and things that are not jobs.
	mkdir -p "$T/a1/7" "$T/a1/8" "$T/a1/notes" "$T/a1/007"
	head -c 100000 /dev/urandom >"$T/a1/7/site.pack.part"
	head -c 100000 /dev/urandom >"$T/a1/8/site.pack"
	echo keep >"$T/a1/notes/x"
	echo keep >"$T/a1/9"
	echo keep >"$T/a1/007/site.pack.part"
	mkdir -p "$T/a1/.trash-6-abcdefgh" # an earlier sweep, cut short
	echo x >"$T/a1/.trash-6-abcdefgh/site.pack.part"
	agent 1 --keep 1
	for _ in $(seq 1 50); do [ ! -e "$T/a1/7" ] && break; sleep 0.1; done
	[ ! -e "$T/a1/7" ]
	grep -q "job 7: removing the partial copy an earlier run left" "$T/agent1.log"
	[ -e "$T/a1/8/site.pack" ] && [ -e "$T/a1/notes/x" ] && [ -e "$T/a1/9" ] && [ -e "$T/a1/007/site.pack.part" ]
	run ls -A "$T/a1"
	refute_output --partial ".trash-"
	# With --keep 1, a finished job prunes the older whole copy.
	leaders_file 1
	head -c 5000 /dev/urandom >"$T/job"
	cm-push send --tls "$T/tls" --manager "$M" --leaders "$T/leaders" "$T/job"
	for _ in $(seq 1 50); do [ ! -e "$T/a1/8" ] && break; sleep 0.1; done
	[ ! -e "$T/a1/8" ]
	[ -e "$T/a1/1/job" ] && [ -e "$T/a1/notes/x" ]
}
