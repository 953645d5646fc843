#!/bin/bash
# make demo: the main job, as a newcomer meets it. A farm of a manager and
# three sites of four servers starts (network namespaces with capped WAN
# links when run as root, plain processes on loopback addresses otherwise),
# the sample site is published to it through cm-sched, every server's report
# is printed, then a small change is published to show that only deltas
# travel. The farm is stopped at the end; its files stay for a look around.
# Usage: scripts/demo.sh BUILD_DIR
set -eu
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$build:$PATH"
demo="$build/demo"
F="$demo/farm"

say() { printf '\n== %s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}

# shellcheck source=tests/lab/lab.bash
. "$src/tests/lab/lab.bash"
# shellcheck source=tests/lab/farm.bash
. "$src/tests/lab/farm.bash"

if [ "${FARM_MODE:-}" != loopback ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v tc >/dev/null; then
	FARM_MODE=ns
	where="network namespaces: each site behind a router, WAN links capped at $FARM_WAN_RATE, the manager's uplink at $FARM_MANAGER_RATE"
else
	FARM_MODE=loopback
	where="processes on loopback addresses (run as root for namespaces with capped WAN links)"
fi
# shellcheck disable=SC2034 # read by lab.bash and farm.bash
LAB_PREFIX="demo$$"
rm -rf "$demo"
mkdir -p "$demo"
trap 'farm_down' EXIT

say "Starting a farm: a manager and 3 sites x 4 servers, as $where"
echo "On every server: cm-elect (leader election), cm-push agent (the WAN tree), cm-mcast recv (the LAN),"
echo "each applying what it receives with cm-apply. On the manager: cm-push serve and cm-sched, ticked like cron."
farm_up "$F"
for seg in east west north; do echo "  site $seg: leader $(farm_leader "$seg") elected"; done

# publish: runs the publish job on the manager, showing cm-job's steps as
# they happen (from the run's log).
publish() {
	local before after log shown=0 n pid
	before=$(farm_manager_tx 2>/dev/null || echo 0)
	RUN=$(($(ls "$F/runs" 2>/dev/null | wc -l) + 1))
	log="$F/runs/$RUN/log"
	echo "\$ cm-sched run pub"
	farm_sched run pub >"$demo/run-$RUN.out" 2>&1 &
	pid=$!
	while :; do
		if [ -e "$log" ]; then
			n=$(wc -l <"$log")
			if [ "$n" -gt "$shown" ]; then
				sed -n "$((shown + 1)),${n}p" "$log" | grep '^cm-job: ' | sed 's/^/   /' || true
				shown=$n
			fi
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.3
	done
	wait "$pid" || true
	sed 's/^/   /' "$demo/run-$RUN.out"
	after=$(farm_manager_tx 2>/dev/null || echo 0)
	SENT=$((after - before))
}

report() {
	echo
	run farm_sched history --run "$RUN"
	local ok=0 all=0 id
	for id in $(farm_ids); do
		all=$((all + 1))
		if diff -r "$F/staging" "$(farm_root "$id")/live" >/dev/null 2>&1; then ok=$((ok + 1)); fi
	done
	echo "$ok of $all servers serve exactly the staging tree."
}

say "Release 1 of the sample site is built in staging/"
"$src/scripts/sample-site.sh" "$F/staging" 1
echo "$(find "$F/staging" -type f | wc -l) files, $(du -sh "$F/staging" | cut -f1)"
run farm_sched job add pub --type publish --site www --group all --sign-key "$F/keys/site.sec" \
	--quorum 90% --retries 2 --backoff 10 >/dev/null

say "First publish: cm-delta, cm-assign, cm-push to the site leaders, cm-mcast to each site, commit"
publish
report
[ "$FARM_MODE" = ns ] && echo "The manager sent $SENT bytes (the whole site once, into the tree)."

say "Release 2: a rebuild (every mtime new), 3 posts corrected, one added, one removed, the script bundle renamed"
rm -rf "$F/staging"
"$src/scripts/sample-site.sh" "$F/staging" 2
publish
report
if [ "$FARM_MODE" = ns ]; then
	echo "The manager sent $SENT bytes for the update: only the deltas travelled."
else
	echo "The update travelled as $(wc -c <"$(ls "$F/runs/$RUN"/a* | head -1)") bytes (publish assignment)."
fi

say "Look around ($F)"
cat <<EOT
  cm-sched status --db $F/cm.db           # jobs, sites, servers' freshness
  cm-sched history --db $F/cm.db          # every run; --run N for the per-server reports
  less $F/runs/$RUN/log                   # what cm-job did, step by step
  cm-delta show $F/runs/$RUN/update.cmd   # the delta table of the update
  cm-assign show $F/runs/$RUN/a*          # the assignment that crossed the WAN
  ls $F/srv/east1/site                    # a server: versions/, live -> the live version
  man -l $src/man/cm.7                    # the overview; every program has its page
The farm's daemons are stopped now; 'make demo' starts a new one.
EOT
