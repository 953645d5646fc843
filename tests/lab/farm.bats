#!/usr/bin/env bats
# The farm, end to end: a manager and three sites of four servers, each site
# behind its own router with its WAN link capped, every daemon running as a
# sysadmin would start it (tests/lab/farm.bash). Jobs go through cm-sched
# and cm-job; every server's live tree is compared with what was published.

load ../cli/helper
load lab
load farm

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
	# shellcheck disable=SC2034 # read by lab.bash
	LAB_PREFIX="fm$$$RANDOM"
	# shellcheck disable=SC2034 # read by farm.bash
	FARM_MODE=ns
	farm_up "$T/farm"
	F="$T/farm"
	farm_sched job add pub --type publish --site www --group all --sign-key "$F/keys/site.sec" >/dev/null
}

teardown() {
	farm_down
}

release() { # N [EXTRA_MB]: release N of the sample site in staging
	rm -rf "$F/staging"
	"$CM_SOURCE/scripts/sample-site.sh" "$F/staging" "$1" >/dev/null
	if [ -n "${2:-}" ]; then head -c "$(($2 << 20))" /dev/urandom >"$F/staging/video-$1.bin"; fi
	rm -rf "$T/r$1"
	cp -a "$F/staging" "$T/r$1"
}

live_is() { # DIR [ID...]: those servers (default all) serve exactly DIR
	local want=$1 id bad=0
	shift
	# shellcheck disable=SC2048 # the ids are words
	for id in ${*:-$(farm_ids)}; do
		if ! diff -r "$want" "$(farm_root "$id")/live" >/dev/null 2>&1; then
			echo "server $id does not serve $want"
			bad=1
		fi
	done
	return $bad
}

stale_of() { # the servers cm-sched counts as stale, sorted
	farm_sched status --json | python3 -c '
import json, sys
print(" ".join(sorted(v["id"] for v in json.load(sys.stdin)["servers"] if v["stale"])))'
}

@test "first publish then commit: every server's live tree equals staging" {
	release 1
	run farm_sched run pub
	cat "$F"/runs/*/log >&2
	assert_success
	live_is "$T/r1"
	diff -r "$T/r1" "$F/shadow/live"
	run farm_sched history --json --run 1
	echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
ok = [x for x in r["reports"] if x["status"] == "ok"]
assert len(ok) == 12, r["reports"]'
	[ -z "$(stale_of)" ]
}

@test "a small update: only the deltas cross the WAN" {
	release 1
	farm_sched run pub
	release 2
	before=$(farm_manager_tx)
	run farm_sched run pub
	assert_success
	after=$(farm_manager_tx)
	live_is "$T/r2"
	sent=$((after - before))
	tree=$(du -sb "$T/r2" | cut -f1)
	echo "manager sent $sent bytes for an update of a $tree-byte site" >&2
	# Publish and commit, TLS, the control traffic: far below one copy of the site.
	[ "$sent" -lt $((tree / 10)) ]
}

# ctest cost: 30
@test "a site's leader killed mid-job: a new leader is elected and the job completes" {
	release 1
	farm_sched run pub
	release 2 80
	farm_sched job set pub --quorum 90% --retries 2 --backoff 5 >/dev/null
	old=$(farm_leader west)
	farm_sched run pub >"$T/run.out" 2>&1 &
	runner=$!
	# Kill it once it is receiving the update.
	receiving() { [ "$(cat "$F/srv/$old/push/"*/*.part 2>/dev/null | wc -c)" -gt 20000000 ]; }
	wait_for 60 receiving
	farm_kill "$old"
	wait "$runner" || true
	cat "$T/run.out" >&2
	new_leader() { [ "$(farm_leader west 2>/dev/null)" != "$old" ]; }
	wait_for 30 new_leader
	# The job completes (after a retry at most): every server but the dead one serves release 2.
	at_two() { farm_sched status --json | grep -q '"sequence":2'; }
	wait_for 120 at_two || {
		farm_sched history >&2
		farm_sched history --run 2 >&2
		farm_sched history --run 3 >&2
		false
	}
	others=$(farm_ids | grep -v "^$old\$")
	live_is "$T/r2" $others
	grep "$old" "$F/serve.log" >&2
	grep -q "$old failed" "$F/serve.log"
}

@test "a site's WAN link cut: it is reported failed, the others commit, and it is synchronized when the link returns" {
	release 1
	farm_sched run pub
	farm_sched job set pub --quorum 66% >/dev/null
	farm_sched job add sync --type synchronize --site www --group all --sign-key "$F/keys/site.sec" >/dev/null
	release 2
	farm_wan_down north
	run farm_sched run pub
	assert_success
	live_is "$T/r2" east1 east2 east3 east4 west1 west2 west3 west4
	live_is "$T/r1" north1 north2 north3 north4
	[ "$(stale_of)" = "north1 north2 north3 north4" ]
	run farm_sched history --json --run 2
	echo "$output" | grep -q 'leader-failed'
	farm_wan_up north
	# Reachable again once the leader's report comes through.
	synced() { farm_sched run sync >/dev/null 2>&1; }
	wait_for 30 synced
	live_is "$T/r2"
	[ -z "$(stale_of)" ]
}

@test "a server offline during a publish is marked stale, and brought up to date when back" {
	release 1
	farm_sched run pub
	farm_sched job set pub --quorum 90% >/dev/null
	# A member, not the site's leader: the leader applies its own copy beside
	# its multicast session (--self-exec), without its receiver. Priorities
	# are measured, so any of the four may lead.
	local leader off
	leader=$(farm_leader east)
	[ -n "$leader" ]
	for off in east1 east2 east3 east4; do [ "$off" = "$leader" ] || break; done
	kill -9 "$(cat "$F/srv/$off/recv.pid")"
	release 2
	run farm_sched run pub
	assert_success
	[ "$(stale_of)" = "$off" ]
	live_is "$T/r1" "$off"
	FARM_PIDS+=("$(_farm_bg "$off" "$F/srv/$off/recv2.log" cm-mcast recv --interface "$(_farm_ip "$off")" \
		--channel "239.192.71.2:7712" --dir "$F/srv/$off/in" --id "$off" \
		--exec "cm-apply --json --root '$F/srv/$off/site' --pubkey '$F/keys/site.pub' {}")")
	farm_sched job add sync --type synchronize --site www --group all --sign-key "$F/keys/site.sec" >/dev/null
	run farm_sched run sync
	assert_success
	live_is "$T/r2"
	[ -z "$(stale_of)" ]
}

@test "rollback: the previous version is live everywhere" {
	release 1
	farm_sched run pub
	release 2
	farm_sched run pub
	live_is "$T/r2"
	farm_sched job add back --type rollback --site www --group all --sign-key "$F/keys/site.sec" >/dev/null
	run farm_sched run back
	assert_success
	live_is "$T/r1"
}

@test "5% loss on every LAN: every server still ends with the release" {
	for id in $(farm_ids); do lab_loss "$(_farm_host "$id")" 5; done
	release 1 5
	run farm_sched run pub
	cat "$F"/runs/*/log >&2
	assert_success
	live_is "$T/r1"
}
