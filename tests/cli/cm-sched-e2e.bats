#!/usr/bin/env bats
# cm-sched end to end on one host, every stage real: cm-sched runs cm-job,
# which runs cm-delta, cm-assign and cm-push send; cm-push serve and two
# agents (leaders l1, l2 on 127.0.0.11-12) forward the assignment and
# deliver it with cm-mcast send to their members (e1, e2 on 127.0.0.21-22;
# w1 on 127.0.0.31), whose cm-mcast recv runs cm-apply on their own site
# directory. Every server's live tree is compared with what was published.

load helper
bats_require_minimum_version 1.5.0

PIDS=()

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
	export TZ=UTC
	PORT=$((20000 + RANDOM % 20000))
	APORT=$((PORT + 1))
	CHE="239.192.78.$((RANDOM % 200 + 1)):$((PORT + 2))"
	CHW="239.192.79.$((RANDOM % 200 + 1)):$((PORT + 3))"
	DB="--db $T/cm.db"
	farm
}

teardown() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	wait_spares
}

bg() { # LOG CMD...: a daemon, stopped at the end
	local log=$1
	shift
	"$@" 2>>"$log" &
	PIDS+=($!)
}

wait_port() {
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

# member ID ADDR CHANNEL: a server that applies what its leader multicasts.
member() {
	mkdir -p "$T/srv/$1" "$T/in/$1"
	bg "$T/$1.log" cm-mcast recv --interface "$2" --channel "$3" --dir "$T/in/$1" --id "$1" \
		--exec "cm-apply --json --root '$T/srv/$1' --pubkey '$T/keys/site.pub' {}"
	eval "PID_$1=\$!"
}

# report SEGMENT LEADER MEMBER...: the cluster report cm-elect would write.
report() {
	local seg=$1 leader=$2 m first=1
	shift 2
	printf '{"format":1,"id":"%s","state":"leader","segment":"%s","leader":{"id":"%s"},"members":[' "$leader" "$seg" "$leader"
	for m in "$@"; do
		[ $first = 1 ] || printf ','
		first=0
		printf '{"id":"%s"}' "$m"
	done
	printf ']}'
}

farm() {
	mkdir -p "$T/keys" "$T/staging"
	cm-assign keygen --sign -o "$T/keys/site" >/dev/null
	cm-push ca init "$T/tls"
	cm-push ca issue "$T/tls" manager l1 l2
	bg "$T/serve.log" cm-push serve --tls "$T/tls" --listen "127.0.0.1:$PORT" --state "$T/push" --agent-port "$APORT"
	wait_port 127.0.0.1 "$PORT"
	member e1 127.0.0.21 "$CHE"
	member e2 127.0.0.22 "$CHE"
	member w1 127.0.0.31 "$CHW"
	bg "$T/l1.log" cm-push agent --tls "$T/tls" --name l1 --listen "127.0.0.11:$APORT" --manager "127.0.0.1:$PORT" \
		--dir "$T/l1" --deliver "cm-mcast send --json --interface 127.0.0.11 --channel $CHE --expect 2 --report-timeout 10 {}"
	bg "$T/l2.log" cm-push agent --tls "$T/tls" --name l2 --listen "127.0.0.12:$APORT" --manager "127.0.0.1:$PORT" \
		--dir "$T/l2" --deliver "cm-mcast send --json --interface 127.0.0.12 --channel $CHW --expect 1 --report-timeout 10 {}"
	wait_port 127.0.0.11 "$APORT"
	wait_port 127.0.0.12 "$APORT"
	printf 'l1 127.0.0.11:%s east\nl2 127.0.0.12:%s west\n' "$APORT" "$APORT" >"$T/leaders"

	cm-sched init $DB 2>/dev/null
	cm-sched config $DB -- push_options "--tls $T/tls --manager 127.0.0.1:$PORT"
	cm-sched site add www $DB --staging "$T/staging" --shadow "$T/shadow"
	cm-sched group add all $DB --segments east,west --leaders "$T/leaders"
	{ printf '['; report east l1 e1 e2; printf ','; report west l2 w1; printf ']'; } | cm-sched server import $DB
	cm-sched job add pub $DB --type publish --site www --group all --sign-key "$T/keys/site.sec" >/dev/null
}

release() { # N: the staging tree of release N
	rm -rf "$T/staging"
	"$CM_SOURCE/scripts/sample-site.sh" "$T/staging" "$1" >/dev/null
}

live_is() { # DIR SERVER...: those servers' live trees equal DIR
	local want=$1 s
	shift
	for s in "$@"; do
		diff -r "$want" "$T/srv/$s/live" >/dev/null || {
			echo "server $s differs from $want"
			diff -r "$want" "$T/srv/$s/live" | head -5
			return 1
		}
	done
}

sequence_is() { # N
	run cm-sched status --json $DB
	echo "$output" | python3 -c "import json,sys; s=json.load(sys.stdin); q=s['sites'][0]['sequence']; assert q == $1, q"
}

@test "publish: every server and the shadow copy hold the release; reports and freshness are recorded" {
	release 1
	run cm-sched run pub $DB
	cat "$T"/runs/*/log
	assert_success
	live_is "$T/staging" e1 e2 w1
	diff -r "$T/staging" "$T/shadow/live"
	sequence_is 1
	run cm-sched history --json $DB --run 1
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "succeeded", r
ok = sorted(x["server"] for x in r["reports"] if x["status"] == "ok")
assert ok == ["e1", "e2", "w1"], r["reports"]'
	run cm-sched status --json $DB
	echo "$output" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert all(not v["stale"] and v["sequences"]["www"] == 1 for v in s["servers"]), s["servers"]'
	# Nothing changed: the next publish sends nothing and says so.
	run cm-sched run pub $DB
	assert_success
	assert_output --partial "nothing changed"
}

@test "publish a second release, then roll back: servers follow, the site's sequence too" {
	release 1
	cm-sched run pub $DB
	cp -a "$T/staging" "$T/r1"
	release 2
	# Names a hook must get as they are, in CM_CHANGED and CM_CHANGED0.
	printf x >"$T/staging/q\"uote"
	printf y >"$T/staging/$(printf 'tab\tx')"
	cm-sched job set pub $DB --hook-before "cp \"\$CM_CHANGED\" '$T/changed.txt'; cp \"\$CM_CHANGED0\" '$T/changed0'"
	# cm-delta caches no hash of a file changed in the last 2 s (the
	# shadow's spare, made in the background, links every file).
	cm-apply status --root "$T/shadow" >/dev/null
	sleep 2.1
	cm-sched run pub $DB
	live_is "$T/staging" e1 e2 w1
	sequence_is 2
	grep -qx 'q"uote' "$T/changed.txt"
	grep -qx "$(printf 'tab\tx')" "$T/changed.txt"
	python3 - "$T/changed0" <<'PY'
import sys
names = open(sys.argv[1], "rb").read().split(b"\0")
assert b'q"uote' in names and b"tab\tx" in names, names
PY
	cm-sched job set pub $DB --hook-before ""
	# cm-delta's hash cache is beside the shadow copy, not one per version.
	[ -s "$T/shadow.cm-manifest" ]
	[ -z "$(find "$T/shadow/versions" -name '*.cm-manifest')" ]
	cm-sched job add back $DB --type rollback --site www --group all --sign-key "$T/keys/site.sec" >/dev/null
	run cm-sched run back $DB
	assert_success
	live_is "$T/r1" e1 e2 w1
	sequence_is 1
	diff -r "$T/r1" "$T/shadow/live"
	# A publish after the rollback goes on from there.
	release 3
	run cm-sched run pub $DB
	assert_success
	live_is "$T/staging" e1 e2 w1
}

@test "checkpoint, then restore it after another release" {
	release 1
	cm-sched run pub $DB
	cp -a "$T/staging" "$T/r1"
	cm-sched job add cp $DB --type checkpoint --site www --group all --keep 2 >/dev/null
	run cm-sched run cp $DB
	assert_success
	ls "$T"/checkpoints/www-1-run*.tar.zst
	release 2
	cm-sched run pub $DB
	live_is "$T/staging" e1 e2 w1
	cm-sched job add rs $DB --type restore --site www --group all --sign-key "$T/keys/site.sec" >/dev/null
	run cm-sched run rs $DB
	assert_success
	live_is "$T/r1" e1 e2 w1
	diff -r "$T/r1" "$T/shadow/live"
	# Checkpoints beyond --keep are deleted, file and record.
	for _ in 1 2; do cm-sched run cp $DB; done
	[ "$(ls "$T"/checkpoints/*.tar.zst | wc -l)" = 2 ]
}

@test "a new server in a group makes the replicate job due; the next tick brings it the site" {
	release 1
	cm-sched run pub $DB
	cm-sched job add rep $DB --type replicate --site www --group all --sign-key "$T/keys/site.sec" >/dev/null
	member e3 127.0.0.23 "$CHE"
	# l1 now expects three members.
	kill "${PIDS[4]}"
	wait "${PIDS[4]}" 2>/dev/null || true
	bg "$T/l1b.log" cm-push agent --tls "$T/tls" --name l1 --listen "127.0.0.11:$APORT" --manager "127.0.0.1:$PORT" \
		--dir "$T/l1" --deliver "cm-mcast send --json --interface 127.0.0.11 --channel $CHE --expect 3 --report-timeout 10 {}"
	wait_port 127.0.0.11 "$APORT"
	report east l1 e1 e2 e3 | cm-sched server import $DB
	run cm-sched job show --json rep $DB
	assert_output --partial "a new server joined"
	run cm-sched tick $DB
	assert_success
	live_is "$T/staging" e1 e2 e3 w1
}

@test "a server that missed a release is stale; synchronize brings it up to date" {
	release 1
	cm-sched run pub $DB
	# shellcheck disable=SC2154 # set by its start helper
	kill "$PID_w1"
	release 2
	cm-sched job set pub $DB --quorum 2 >/dev/null
	run cm-sched run pub $DB
	assert_success # 2 of 3 servers
	live_is "$T/staging" e1 e2
	run cm-sched status --json $DB
	echo "$output" | python3 -c '
import json, sys
s = {v["id"]: v for v in json.load(sys.stdin)["servers"]}
assert s["w1"]["stale"] == ["www"] and not s["e1"]["stale"], s'
	member w1 127.0.0.31 "$CHW"
	cm-sched job add sync $DB --type synchronize --site www --group all --sign-key "$T/keys/site.sec" \
		--hook-stale "echo \$CM_SERVERS >'$T/stale.txt'" >/dev/null
	run cm-sched run sync $DB
	assert_success
	live_is "$T/staging" w1
	[ "$(cat "$T/stale.txt")" = w1 ]
	run cm-sched run sync $DB
	assert_output --partial "no stale servers"
}
