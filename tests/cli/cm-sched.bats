#!/usr/bin/env bats
# cm-sched as a program, with the clock moved by --now and a stand-in job
# command (config job_command) whose behaviour each test sets: schedules,
# conflicts, retries, the quorum, concurrent ticks, a killed tick, bad input
# that leaves the database unchanged. The real job (cm-job and every stage)
# is tested in cm-sched-e2e.bats.

load helper
bats_require_minimum_version 1.5.0

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
	export TZ=UTC
	DB="--db $T/cm.db"
	mkdir -p "$T/staging"
	# The stand-in: logs its run, then does what $T/mode says.
	cat >"$T/job" <<'EOF'
#!/bin/sh
echo "$CM_JOB $CM_RUN $CM_TYPE $CM_NOW ids=$CM_ID_FIRST-$CM_ID_LAST seq=$CM_SEQUENCE stale=$CM_STALE" >>"$CM_WORK/../../calls"
mode=$(cat "$CM_WORK/../../mode.$CM_JOB" 2>/dev/null || echo ok)
case "$mode" in
ok) echo "{\"status\":\"succeeded\",\"message\":\"done\",\"sequence\":$((CM_SEQUENCE + 1))}" >"$CM_RESULT" ;;
fail) echo '{"status":"failed","message":"the push failed"}' >"$CM_RESULT"; exit 1 ;;
slow) touch "$CM_WORK/../../started.$CM_JOB"; i=0; while [ ! -e "$CM_WORK/../../go" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
      echo '{"status":"succeeded","message":"slow done"}' >"$CM_RESULT" ;;
reports) cat >"$CM_RESULT" <<R
{"status":"succeeded","message":"with reports","sequence":$((CM_SEQUENCE + 1)),"pushes":[{"leaders":[{"id":"l1","state":"delivered","group":{"members":[
 {"id":"s1","succeeded":true,"output":{"site":"www","live_sequence":$((CM_SEQUENCE + 1)),"result":"switched"}},
 {"id":"s2","succeeded":false,"output":{"result":"failed"}}]}}]}]}
R
;;
esac
EOF
	chmod +x "$T/job"
	cm-sched init $DB 2>/dev/null
	cm-sched config $DB job_command "$T/job"
	cm-sched site add www $DB --staging "$T/staging" --shadow "$T/shadow"
	cm-sched group add east $DB --segments east
	cm-sched group add west $DB --segments west
	servers east s1 s2
	servers west w1
}

# servers SEGMENT ID... [--now TIME]: a cluster report for them
servers() {
	local seg=$1 first=1 m
	shift
	{
		printf '{"state":"leader","segment":"%s","leader":{"id":"%s"},"members":[' "$seg" "$1"
		for m in "$@"; do
			[ $first = 1 ] || printf ','
			first=0
			printf '{"id":"%s"}' "$m"
		done
		printf ']}'
	} | cm-sched server import $DB ${NOW:+--now "$NOW"}
}

calls() { cat "$T/calls" 2>/dev/null | wc -l; }
dump() { sqlite3 "$T/cm.db" .dump; }

@test "--help lists every command; job --help lists the policies" {
	run cm-sched --help
	assert_success
	for c in init site group job server config tick run status history; do assert_output --partial "cm-sched $c"; done
	run cm-sched job --help
	for o in --schedule --retries --backoff --on-conflict --quorum --include --hook-before --sign-key; do
		assert_output --partial -- "$o"
	done
	# cm-job, the script cm-sched runs, answers --help and --version too
	# (and, run by hand without a job, says who runs it).
	run cm-job --help
	assert_success
	assert_output --partial "usage: cm-job"
	run cm-job --version
	assert_success
	assert_output "cm-job (cm) $(cm-sched --version | sed 's/.* //')"
	run env -u CM_TYPE cm-job
	assert_failure
	assert_output --partial "cm-job is run by cm-sched"
}

@test "sites, groups and jobs: add, list, set, show, remove" {
	run cm-sched job add pub $DB --type publish --site www --group east --schedule '*/15 * * * *' --now 2026-11-25T10:07
	assert_success
	assert_output --partial "next 2026-11-25 10:15:00"
	run cm-sched job list --json $DB
	echo "$output" | python3 -c 'import json,sys; j=json.loads(sys.stdin.readline()); assert j["name"] == "pub" and j["state"] == "idle", j'
	run cm-sched job set pub $DB --retries 3 --backoff 30 --quorum 75% --exclude '*.tmp' --include 'keep.tmp'
	assert_success
	run cm-sched job show --json pub $DB
	echo "$output" | python3 -c '
import json, sys
p = json.load(sys.stdin)["policy"]
assert p["retries"] == 3 and p["backoff"] == 30 and p["quorum"] == "75%", p
assert p["filters"] == [["exclude", "*.tmp"], ["include", "keep.tmp"]], p["filters"]'
	run cm-sched site list $DB
	assert_output --partial "www  staging $T/staging"
	run cm-sched group list $DB
	assert_output --partial "east  segments east  servers 2"
	run -1 cm-sched site rm www $DB
	assert_output --partial "used by job 'pub'"
	cm-sched job rm pub $DB
	cm-sched site rm www $DB
	run cm-sched site list $DB
	assert_output ""
}

@test "bad input is refused with a clear message and the database is unchanged" {
	cm-sched job add pub $DB --type publish --site www --group east
	before=$(dump)
	run -2 cm-sched job add x $DB --type publish --site www --group east --schedule '61 * * * *'
	assert_output --partial "outside 0-59 in the minute field"
	run -2 cm-sched job add x $DB --type publish --site www --group east --schedule 'every day'
	assert_output --partial "expected 5 fields"
	run -2 cm-sched job add x $DB --type publish --site www --group east --schedule 'at 2020-01-01T00:00'
	assert_output --partial "in the past"
	# A schedule no date matches would look like "manual" and never run.
	run -2 cm-sched job add x $DB --type publish --site www --group east --schedule '0 0 31 2 *'
	assert_output --partial "never matches"
	run -2 cm-sched job set pub $DB --schedule '0 0 30 2 *'
	assert_output --partial "never matches"
	run -2 cm-sched job add x $DB --type publish --site www --group east --schedule '5-1 * * * *'
	assert_output --partial "reversed range in the minute field (write 1-5)"
	run -1 cm-sched job add x $DB --type publish --site nowhere --group east
	assert_output --partial "no site 'nowhere'"
	run -1 cm-sched job add x $DB --type publish --site www --group nobody
	assert_output --partial "no group 'nobody'"
	run -2 cm-sched job add x $DB --type frobnicate --site www --group east
	run -1 cm-sched job add x $DB --type publish --site www --group east --sign-key "$T/missing.sec"
	assert_output --partial "$T/missing.sec"
	run -2 cm-sched job set pub $DB --quorum 150%
	run -2 cm-sched job set pub $DB --on-conflict maybe
	run -1 cm-sched site add www2 $DB --staging "$T/nope" --shadow "$T/shadow2"
	assert_output --partial "'$T/nope' is not a directory"
	run -2 cm-sched site add 'bad/name' $DB --staging "$T/staging" --shadow "$T/s"
	run -1 cm-sched job add pub $DB --type publish --site www --group east
	assert_output --partial "exists"
	# The staging tree of a publish job disappears: the job cannot be edited into a broken state.
	mv "$T/staging" "$T/staging.away"
	run -1 cm-sched job set pub $DB --schedule '@daily'
	assert_output --partial "is not a directory"
	mv "$T/staging.away" "$T/staging"
	[ "$(dump)" = "$before" ]
	run -2 cm-sched init --db ''
	assert_output --partial "an empty database file name (--db)"
	run -1 cm-sched history NOSUCHJOB $DB
	assert_output --partial "no job 'NOSUCHJOB'"
	run -2 cm-sched history --limit 0 $DB
	assert_output --partial "--limit must be between 1 and 100000"
	run -2 cm-sched group add g2 $DB --segments ',,'
	assert_output --partial "--segments must be segment names separated by commas"
	run -2 cm-sched job add q0 $DB --type publish --site www --group east --quorum 0
	assert_output --partial "bad quorum '0'"
	# Given but empty (an unset variable): a usage error, not all.
	run -2 cm-sched job add q0 $DB --type publish --site www --group east --quorum ''
	assert_output --partial "bad quorum '': empty"
	run -2 cm-sched job add q0 $DB --type publish --site www --group east --quorum ' '
	run -2 cm-sched quorum --expect 1 --quorum '' "$T/nonesuch"
	assert_output --partial "bad quorum '': empty"
	run cm-sched config $DB --json
	assert_success
	[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["job_command"])' "$output")" = "$T/job" ]
	run cm-sched config $DB --json reachable_seconds
	assert_output '{"reachable_seconds":""}'
	run -2 cm-sched config $DB work_dir relative/runs
	assert_output --partial "work_dir must be an absolute path"
	run -2 cm-sched config $DB reachable_seconds 0
	assert_output --partial "reachable_seconds must be at least 1"
	run -1 cm-sched config $DB job_command "$T/no-such-job"
	assert_output --partial "job_command: cannot run '$T/no-such-job': No such file or directory"
	mkdir "$T/adir"
	run -1 cm-sched status --db "$T/adir"
	assert_output --partial "is not a file"
}

@test "a locked, damaged or newer database: a clear error, nothing changed" {
	before=$(dump)
	python3 -c "
import sqlite3, time, sys
c = sqlite3.connect('$T/cm.db', isolation_level=None)
c.execute('BEGIN IMMEDIATE')
open('$T/locked', 'w').close()
time.sleep(8)
" &
	holder=$!
	for _ in $(seq 50); do [ -e "$T/locked" ] && break; sleep 0.1; done
	run -7 cm-sched group add north $DB
	assert_output --partial "locked"
	wait "$holder"
	[ "$(dump)" = "$before" ]
	sqlite3 "$T/cm.db" 'PRAGMA user_version = 99'
	run -3 cm-sched status $DB
	assert_output --partial "newer cm-sched (schema 99"
	head -c 4096 /dev/urandom >"$T/junk.db"
	run -3 cm-sched status --db "$T/junk.db"
	assert_output --partial "not a cm-sched database"
	run -1 cm-sched status --db "$T/none.db"
	assert_output --partial "cm-sched init"
}

@test "the queries write nothing: another user and a read-only mount can read" {
	# The database (and its -wal and -shm, which a writer leaves) of root,
	# in a directory another user may read but not write.
	cm-sched site set www $DB --staging "$T/staging"
	RO=$(mktemp -d /tmp/cm-sched-ro.XXXXXX)
	chmod 755 "$RO"
	cp -a "$T"/cm.db* "$RO/"
	[ -e "$RO/cm.db-shm" ]
	for q in "status" "history" "job list" "site list" "group list"; do
		# shellcheck disable=SC2086 # word splitting wanted
		run runuser -u nobody -- cm-sched $q --db "$RO/cm.db"
		assert_success
	done
	run runuser -u nobody -- cm-sched status --db "$RO/cm.db"
	assert_output --partial "site www"
	run runuser -u nobody -- cm-sched group add north --db "$RO/cm.db"
	assert_failure
	rm -rf "$RO"
	MNT=$T/ro
	mkdir "$MNT"
	mount --bind "$T" "$MNT"
	mount -o remount,ro,bind "$MNT"
	run cm-sched status --db "$MNT/cm.db"
	umount "$MNT"
	assert_success
	assert_output --partial "site www"
}

@test "a cron schedule runs at its minutes only; 'at' runs once; 'manual' only with run" {
	cm-sched job add cron $DB --type publish --site www --group east --schedule '*/10 * * * *' --now 2026-11-25T10:01
	cm-sched job add once $DB --type checkpoint --site www --group west --schedule 'at 2026-11-25T10:05' --now 2026-11-25T10:01
	cm-sched job add hand $DB --type checkpoint --site www --group west
	cm-sched tick $DB --now 2026-11-25T10:04
	[ "$(calls)" = 0 ]
	cm-sched tick $DB --now 2026-11-25T10:05
	[ "$(calls)" = 1 ]
	grep -q '^once ' "$T/calls"
	cm-sched tick $DB --now 2026-11-25T10:10
	[ "$(calls)" = 2 ]
	grep -q '^cron .* 1795601400 ' "$T/calls" # 10:10 UTC
	cm-sched tick $DB --now 2026-11-25T10:11
	cm-sched tick $DB --now 2026-11-25T10:19
	[ "$(calls)" = 2 ]
	run cm-sched job show --json once $DB
	echo "$output" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["state"] == "done" and j["next_run"] is None, j'
	cm-sched run hand $DB --now 2026-11-25T10:12
	[ "$(calls)" = 3 ]
	# Each run reserves its own block of assignment ids.
	[ "$(cut -d' ' -f5 "$T/calls" | sort -u | wc -l)" = 3 ]
}

@test "a failing job is retried with doubling back-off, then given up until its next occurrence" {
	echo fail >"$T/mode.pub"
	cm-sched job add pub $DB --type publish --site www --group east --schedule '0 * * * *' --retries 2 --backoff 60 \
		--now 2026-11-25T09:30
	run -6 cm-sched tick $DB --now 2026-11-25T10:00
	assert_output --partial "the push failed"
	run cm-sched job show --json pub $DB
	echo "$output" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["next_run"] == 1795600860, j' # 10:01
	cm-sched tick $DB --now 2026-11-25T10:00:30
	[ "$(calls)" = 1 ]
	run -6 cm-sched tick $DB --now 2026-11-25T10:01
	run cm-sched job show --json pub $DB
	echo "$output" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["next_run"] == 1795600980, j' # +120 s
	run -6 cm-sched tick $DB --now 2026-11-25T10:03
	[ "$(calls)" = 3 ]
	run cm-sched job show --json pub $DB
	echo "$output" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["next_run"] == 1795604400 and j["attempt"] == 0, j   # 11:00, the next occurrence
assert "gave up after 3 attempts" in j["message"], j["message"]'
	run cm-sched history --json $DB pub
	[ "$(echo "$output" | grep -c '"status":"failed"')" = 3 ]
	# It succeeds later: the counters reset.
	echo ok >"$T/mode.pub"
	cm-sched tick $DB --now 2026-11-25T11:00
	run cm-sched status --json $DB
	echo "$output" | python3 -c 'import json,sys; s=json.load(sys.stdin); j=s["jobs"][0]; assert j["last_run"]["status"] == "succeeded" and j["attempt"] == 0, j'
}

@test "conflicts: same site and overlapping servers are queued (or cancelled), and say with whom" {
	echo slow >"$T/mode.a"
	cm-sched job add a $DB --type publish --site www --group east
	cm-sched job add b $DB --type replicate --site www --group east --schedule '* * * * *' --now 2026-11-25T10:00
	cm-sched job add c $DB --type replicate --site www --group west --schedule '* * * * *' --now 2026-11-25T10:00
	cm-sched job add d $DB --type replicate --site www --group east --schedule '* * * * *' --on-conflict cancel \
		--now 2026-11-25T10:00
	cm-sched run a $DB --now 2026-11-25T10:00 &
	runner=$!
	for _ in $(seq 100); do [ -e "$T/started.a" ] && break; sleep 0.1; done
	run -6 cm-sched tick $DB --now 2026-11-25T10:01
	assert_output --partial "b: queued: conflicts with running job 'a': site 'www' on servers s1, s2"
	assert_output --partial "d: cancelled: conflicts with running job 'a'"
	grep -q '^c ' "$T/calls" # another group's servers: no conflict
	run ! grep -q '^b ' "$T/calls"
	run cm-sched job show --json b $DB
	assert_output --partial '"state":"queued"'
	run cm-sched history --json $DB d
	assert_output --partial '"status":"cancelled"'
	touch "$T/go"
	wait "$runner"
	cm-sched tick $DB --now 2026-11-25T10:02
	grep -q '^b ' "$T/calls"
	# While a runs, run b is refused outright. (The first run's marker goes
	# first: the wait below must see this run of a start.)
	rm -f "$T/go" "$T/started.a"
	cm-sched run a $DB --now 2026-11-25T10:03 &
	runner=$!
	for _ in $(seq 100); do [ -e "$T/started.a" ] && break; sleep 0.1; done
	run -7 cm-sched run b $DB --now 2026-11-25T10:03
	assert_output --partial "conflicts with running job 'a'"
	touch "$T/go"
	wait "$runner"
}

@test "the quorum of reachable servers is checked before distributing" {
	cm-sched group add north $DB --segments north
	NOW=2026-11-25T09:00 servers north n1 n2 n3
	NOW=2026-11-25T09:58 servers north n1
	cm-sched job add pub $DB --type publish --site www --group north --quorum 2
	cm-sched config $DB reachable_seconds 300
	run -6 cm-sched run pub $DB --now 2026-11-25T10:00
	assert_output --partial "quorum of reachable servers not met: 1 of 3 servers of group 'north' seen in the last 300 s, 2 needed"
	[ "$(calls)" = 0 ]
	run cm-sched history --json $DB
	assert_output --partial '"status":"refused"'
	NOW=2026-11-25T09:59 servers north n2
	run cm-sched run pub $DB --now 2026-11-25T10:00
	assert_success
	[ "$(calls)" = 1 ]
	# A percentage with decimals: 66.7% of 3 is all 3 (n3 not seen).
	cm-sched job set pub $DB --quorum 66.7%
	run -6 cm-sched run pub $DB --now 2026-11-25T10:01
	assert_output --partial "2 of 3 servers of group 'north' seen in the last 300 s, 3 needed"
	# A quorum the database holds but cm-sched would not take (edited by
	# hand): the run is refused and says which, not read as another quorum.
	sqlite3 "$T/cm.db" "UPDATE jobs SET policy = json_set(policy, '$.quorum', 'most') WHERE name = 'pub'"
	run -6 cm-sched run pub $DB --now 2026-11-25T10:02
	assert_output --partial "job 'pub': bad quorum 'most'"
	# An empty one, as an earlier cm-sched stored --quorum '' (and ran as
	# all): still all after the upgrade, not a job that stops running; and
	# editing something else drops it rather than refusing the edit.
	sqlite3 "$T/cm.db" "UPDATE jobs SET policy = json_set(policy, '$.quorum', '') WHERE name = 'pub'"
	run -6 cm-sched run pub $DB --now 2026-11-25T10:03
	assert_output --partial "of 3 servers of group 'north' seen in the last 300 s, 3 needed"
	[ "$(calls)" = 1 ]
	run cm-sched job set pub $DB --retries 1
	assert_success
	[ "$(sqlite3 "$T/cm.db" "SELECT json_type(policy, '$.quorum') FROM jobs WHERE name = 'pub'")" = "" ]
	# No quorum in the policy: all 3.
	sqlite3 "$T/cm.db" "UPDATE jobs SET policy = json_remove(policy, '$.quorum') WHERE name = 'pub'"
	run -6 cm-sched run pub $DB --now 2026-11-25T10:04
	assert_output --partial "of 3 servers of group 'north' seen in the last 300 s, 3 needed"
	[ "$(calls)" = 1 ]
}

@test "two ticks at once never run one job twice" {
	echo slow >"$T/mode.pub"
	cm-sched job add pub $DB --type publish --site www --group east --schedule '* * * * *' --now 2026-11-25T09:59
	cm-sched tick $DB --now 2026-11-25T10:00 2>"$T/t1" &
	p1=$!
	cm-sched tick $DB --now 2026-11-25T10:00 2>"$T/t2" &
	p2=$!
	for _ in $(seq 100); do [ -e "$T/started.pub" ] && break; sleep 0.1; done
	sleep 0.5
	touch "$T/go"
	wait "$p1"
	wait "$p2"
	[ "$(calls)" = 1 ]
	[ "$(cat "$T/t1" "$T/t2" | grep -c 'started')" = 1 ]
}

@test "a tick killed mid-job: the next tick stops the orphaned job and records it interrupted" {
	echo slow >"$T/mode.pub"
	cm-sched job add pub $DB --type publish --site www --group east --schedule '* * * * *' --retries 1 --backoff 60 \
		--now 2026-11-25T09:59
	cm-sched tick $DB --now 2026-11-25T10:00 &
	ticker=$!
	for _ in $(seq 100); do [ -e "$T/started.pub" ] && break; sleep 0.1; done
	kill -9 "$ticker"
	wait "$ticker" || true
	pgrep -f "$T/job" >/dev/null # the job command lives on, orphaned
	run -6 cm-sched tick $DB --now 2026-11-25T10:00:30
	assert_output --partial "pub: recovered: the cm-sched that ran it"
	for _ in $(seq 100); do pgrep -f "$T/job" >/dev/null || break; sleep 0.1; done
	run ! pgrep -f "$T/job"
	run cm-sched history --json $DB
	assert_output --partial '"status":"interrupted"'
	run cm-sched job show --json pub $DB
	echo "$output" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["state"] == "idle" and j["next_run"] == 1795600890, j'
	# The retry then runs normally.
	echo ok >"$T/mode.pub"
	run cm-sched tick $DB --now 2026-11-25T10:01:30
	assert_success
	assert_output --partial "pub: succeeded"
}

@test "per-server reports: freshness recorded, the failed hook named the failed server" {
	echo reports >"$T/mode.pub"
	cm-sched job add pub $DB --type publish --site www --group east --hook-failed "echo \$CM_HOOK \$CM_SERVERS >'$T/hook'"
	cm-sched run pub $DB
	[ "$(cat "$T/hook")" = "failed s2" ]
	run cm-sched history --json $DB --run 1
	echo "$output" | python3 -c '
import json, sys
r = {x["server"]: x["status"] for x in json.load(sys.stdin)["reports"]}
assert r == {"s1": "ok", "s2": "failed"}, r'
	run cm-sched status --json $DB
	echo "$output" | python3 -c '
import json, sys
s = {v["id"]: v for v in json.load(sys.stdin)["servers"]}
assert s["s1"]["stale"] == [] and s["s1"]["sequences"]["www"] == 1, s["s1"]
assert s["s2"]["stale"] == ["www"] and s["s2"]["status"] == "failed", s["s2"]'
	run cm-sched server list $DB
	assert_output --partial 'stale: ["www"]'
	# synchronize hands the stale servers to its job.
	echo ok >"$T/mode.sync"
	cm-sched job add sync $DB --type synchronize --site www --group east
	cm-sched run sync $DB
	grep -q '^sync .* stale=s2$' "$T/calls"
}

@test "a disabled job is not run by ticks; enabled again it is" {
	cm-sched job add pub $DB --type publish --site www --group east --schedule '* * * * *' --now 2026-11-25T09:59
	cm-sched job set pub $DB --disable
	cm-sched tick $DB --now 2026-11-25T10:00
	[ "$(calls)" = 0 ]
	cm-sched job set pub $DB --enable --now 2026-11-25T10:00
	cm-sched tick $DB --now 2026-11-25T10:01
	[ "$(calls)" = 1 ]
	run cm-sched status $DB --now 2026-11-25T10:01
	assert_output --partial "pub              publish     www        idle     2026-11-25 10:02:00 succeeded"
}

@test "keep_runs: older runs' work directories go, the history keeps every run" {
	cm-sched job add other $DB --type publish --site www --group west --schedule manual
	cm-sched job add pub $DB --type publish --site www --group east --schedule manual
	cm-sched config $DB keep_runs 2
	cm-sched run other $DB
	for _ in 1 2 3 4; do cm-sched run pub $DB; done
	# The two newest, and the last run of each job however old.
	run ls "$T/runs"
	assert_output "$(printf '1\n4\n5')"
	[ "$(cm-sched history $DB | grep -c ' pub ')" = 4 ]
	# A directory no run of this database owns is not touched.
	mkdir "$T/runs/77"
	cm-sched run pub $DB
	run ls "$T/runs"
	assert_output "$(printf '1\n5\n6\n77')"
	run -2 cm-sched config $DB keep_runs many
	assert_output --partial "keep_runs must be a whole number, not 'many'"
	[ "$(cm-sched config $DB keep_runs)" = 2 ]
	# 0 keeps them all.
	cm-sched config $DB keep_runs 0
	cm-sched run pub $DB
	cm-sched run pub $DB
	run ls "$T/runs"
	assert_output "$(printf '1\n5\n6\n7\n77\n8')"
}

@test "quorum counts the servers that succeeded, not members cm-mcast did not expect" {
	# Two expected servers, one failed; a host not in --members got it.
	cat >"$T/report.json" <<'JSON'
{"leaders":[{"id":"l1","group":{"members":[
 {"id":"a","succeeded":false,"expected":true},
 {"id":"b","succeeded":true,"expected":true},
 {"id":"x","succeeded":true,"expected":false}]}}]}
JSON
	run -6 cm-sched quorum --expect 2 "$T/report.json"
	assert_output --partial "1 of 2 servers succeeded (quorum 2): not met"
	run cm-sched quorum --expect 2 --quorum 1 "$T/report.json"
	assert_success
	assert_output "1 of 2 servers succeeded (quorum 1): met"
	# A report of an older cm-mcast (no "expected"): every member counts.
	sed 's/,"expected":[a-z]*//' "$T/report.json" >"$T/old.json"
	run cm-sched quorum --expect 2 "$T/old.json"
	assert_success
}
