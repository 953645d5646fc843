#!/usr/bin/env bash
# bench/sched.sh — cm-sched tick at scale: what cron pays every minute.
#
# Usage: CM_BIN=/path/to/build bench/sched.sh
#
# Target (the issue): a tick over a database of 1,000 jobs and 10,000
# servers finishes in under a second when nothing is due, and its cost grows
# linearly at most.
#
# 1. Databases of increasing size, (jobs, servers) = SIZES (250/2,500,
#    500/5,000, 1,000/10,000, 2,000/20,000 by default), each built with the
#    cm-sched CLI only: SITES sites, NGROUPS groups of one cm-elect segment
#    each, the servers spread evenly over the segments and imported with one
#    `cm-sched server import` of an array of cluster reports, and the jobs
#    added one `cm-sched job add` at a time (publish jobs, spread over the
#    sites and groups) with schedules that are not due at the measured time
#    (other hours, later today, `at` a later day, a few manual). Each size
#    starts from a copy of the previous one. Setup is timed apart and not
#    counted. job_command is /bin/false, so a job wrongly run would show as
#    a failure.
# 2. Then, on every size and on an empty database (the fixed cost of
#    starting the program and opening the database), interleaved round by
#    round so a burst of load from elsewhere falls on all sizes alike:
#    `cm-sched tick --now NOW`, median of RUNS runs after one untimed warm-up
#    run; every run must exit 0 and say nothing, and `cm-sched history` must
#    be empty afterwards. Also the tick's CPU time (user + sys, mean of
#    CPU_TICKS ticks, median over the rounds; informational, steadier than
#    wall time on a loaded machine) and `cm-sched status --json`
#    (informational), median of RUNS.
# 3. Growth: the tick's time at the largest size over the next largest
#    (linear would be their ratio of jobs), and the cost per job at the
#    largest size over the smallest (at most linear: <= 1).
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md. Times are wall-clock medians on a shared machine; the
# exit status says only whether the benchmark ran (and that no job ran).
#
# Environment: CM_BIN (dir holding cm-sched; default ../build), SIZES
# ("JOBS:SERVERS ..."), RUNS (5), CPU_TICKS (40), SITES (4), NGROUPS (100),
# KEEP=1 to keep the run directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"

CM_BIN=${CM_BIN:-$here/../build}
cm=$CM_BIN/cm-sched
SIZES=${SIZES:-250:2500 500:5000 1000:10000 2000:20000}
RUNS=${RUNS:-5}
CPU_TICKS=${CPU_TICKS:-40}
SITES=${SITES:-4}
NGROUPS=${NGROUPS:-100}
KEEP=${KEEP:-0}

# Local times are UTC: the schedules below and --now mean what they say.
export TZ=UTC
# When the jobs are added and the servers seen; the measured tick runs half
# an hour later, and nothing is due then.
SETUP_NOW=2026-11-25T10:00
NOW=2026-11-25T10:30
# None of these is due at NOW for a job added at SETUP_NOW (2026-11-25 is a
# Wednesday): two are due later the same day, the rest on later days.
SCHEDULES=('0 3 * * *' '45 10 * * *' '@daily' '0 12 * * 1-5' 'at 2026-12-01T00:00' '30 2 * * 0' 'manual')

[ -x "$cm" ] || die "$cm not found (build with make, or point CM_BIN at the build dir)"
need awk sort mktemp
if [ "$NGROUPS" -lt 1 ] || [ "$SITES" -lt 1 ]; then die "SITES and NGROUPS must be at least 1"; fi

run=$(mktemp -d "${TMPDIR:-/tmp}/cm-bench-sched.XXXXXX")
cleanup() {
	if [ "$KEEP" = 1 ]; then
		note "kept $run"
	else
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'note "failed at line $LINENO"' ERR

# A private copy of the program: a rebuild of CM_BIN during the run (the
# linker rewrites the file) must not change or break what is measured.
built=$(date -r "$cm" '+%F %H:%M')
cp "$cm" "$run/cm-sched"
cm=$run/cm-sched

mkdir "$run/staging"
for ((s = 0; s < SITES; s++)); do mkdir "$run/staging/site$s"; done

# reports SERVERS — one JSON array of NGROUPS cm-elect cluster reports, one
# per segment, SERVERS members in all (ids srv-SEG-N; the first is the
# leader).
reports() {
	awk -v n="$1" -v g="$NGROUPS" 'BEGIN {
		printf "["
		for (s = 0; s < g; s++) {
			per = int(n / g) + (s < n % g ? 1 : 0)
			printf "%s{\"state\":\"leader\",\"segment\":\"seg%03d\",\"leader\":{\"id\":\"srv-%03d-0\"},\"members\":[", (s ? "," : ""), s, s
			for (i = 0; i < per; i++)
				printf "%s{\"id\":\"srv-%03d-%d\"}", (i ? "," : ""), s, i
			printf "]}"
		}
		print "]"
	}'
}

# new_db DB — the sites, groups and config every size shares.
new_db() {
	local db=$1 s g seg
	"$cm" init --db "$db" 2>/dev/null
	"$cm" config --db "$db" job_command /bin/false
	for ((s = 0; s < SITES; s++)); do
		"$cm" site add "site$s" --db "$db" --staging "$run/staging/site$s" --shadow "$run/shadow/site$s"
	done
	for ((g = 0; g < NGROUPS; g++)); do
		printf -v seg 'seg%03d' "$g"
		"$cm" group add "g$g" --db "$db" --segments "$seg"
	done
}

# add_jobs DB FROM TO — jobs j<FROM>..j<TO-1>, spread over the sites, groups
# and schedules.
add_jobs() {
	local db=$1 from=$2 to=$3 i
	for ((i = from; i < to; i++)); do
		"$cm" job add "$(printf 'j%05d' "$i")" --db "$db" --type publish --site "site$((i % SITES))" \
			--group "g$((i % NGROUPS))" --schedule "${SCHEDULES[i % ${#SCHEDULES[@]}]}" \
			--now "$SETUP_NOW" >/dev/null
	done
}

# tick_once DB — one tick at NOW; its exit status in TICK_RC, stderr kept.
tick_once() {
	TICK_RC=0
	"$cm" tick --db "$1" --now "$NOW" >/dev/null 2>>"$run/tick.err" || TICK_RC=$?
}

# cpu_ms DB K — the CPU time (user + sys, ms) of K ticks of DB at NOW:
# bash's `times` in a subshell counts only that subshell's children. Less
# sensitive than wall time to what else the machine is doing.
cpu_ms() {
	(
		for ((i = 0; i < $2; i++)); do tick_once "$1"; done
		times
	) | awk 'NR == 2 {
		for (f = 1; f <= 2; f++) { v = $f; sub(/s$/, "", v); split(v, a, "m"); t += a[1] * 60 + a[2] }
		printf "%.1f", t * 1000
	}'
}

# status_once DB OUT — cm-sched status --json into OUT.
status_once() { "$cm" status --json --db "$1" --now "$NOW" >"$2"; }

# big VERDICT — "met", or "MISSED" in capitals so it stands out.
big() { if [ "$1" = met ]; then echo met; else echo MISSED; fi; }

load0=$(cut -d ' ' -f 1 /proc/loadavg)
cmv=$("$cm" --version 2>/dev/null | awk 'NR == 1 { print $NF }')

# ------------------------------------------------------------------ setup

# The fixed cost, measured with every size: an empty database (index 0).
dbs=("$run/empty.db") jobs_l=(0) srv_l=(0) setup_l=(-) import_l=(-) adds_l=(-)
"$cm" init --db "${dbs[0]}" 2>/dev/null
"$cm" config --db "${dbs[0]}" job_command /bin/false
prev='' prev_jobs=0
for size in $SIZES; do
	n_jobs=${size%%:*} n_srv=${size#*:}
	db=$run/sched-$n_jobs-$n_srv.db
	note "building $n_jobs jobs, $n_srv servers"
	t0=$(now_ns)
	if [ -n "$prev" ]; then
		# A closed WAL database is one file: no -wal or -shm left behind.
		[ ! -e "$prev-wal" ] || die "$prev-wal is still there: cannot copy $prev as one file"
		cp "$prev" "$db"
	else
		new_db "$db"
	fi
	reports "$n_srv" >"$run/reports.json"
	timed "$cm" server import "$run/reports.json" --db "$db" --now "$SETUP_NOW"
	import_l+=("$T_WALL")
	timed add_jobs "$db" "$prev_jobs" "$n_jobs"
	adds_l+=("$T_WALL")
	setup_l+=("$(secs $(($(now_ns) - t0)))")
	got=$("$cm" job list --json --db "$db" | wc -l)
	[ "$got" = "$n_jobs" ] || die "$db has $got jobs, not $n_jobs"
	got=$("$cm" server list --db "$db" | wc -l)
	[ "$got" = "$n_srv" ] || die "$db has $got servers, not $n_srv"
	note "setup ${setup_l[-1]} s (server import ${import_l[-1]} s, $((n_jobs - prev_jobs)) job adds ${adds_l[-1]} s)"
	dbs+=("$db") jobs_l+=("$n_jobs") srv_l+=("$n_srv")
	prev=$db prev_jobs=$n_jobs
done
n=${#dbs[@]}

# ------------------------------------------------------------ measurement

# Interleaved: each round ticks every database once, starting at another
# one each time, so a burst of load from elsewhere on the machine falls on
# all sizes alike.
note "ticks: $RUNS rounds over $n databases, after a warm-up"
tick_t=() cpu_t=()
for ((i = 0; i < n; i++)); do
	tick_once "${dbs[$i]}" # warm-up: page cache, WAL
	[ "$TICK_RC" = 0 ] || die "${dbs[$i]}: the warm-up tick exited $TICK_RC: $(cat "$run/tick.err")"
	tick_t+=("") cpu_t+=("")
done
for ((r = 1; r <= RUNS; r++)); do
	for ((j = 0; j < n; j++)); do
		i=$(((j + r) % n)) # each round starts at another database
		timed tick_once "${dbs[$i]}"
		[ "$TICK_RC" = 0 ] || die "${dbs[$i]}: tick $r exited $TICK_RC: $(cat "$run/tick.err")"
		tick_t[i]+="$T_WALL "
	done
done
note "CPU time: $CPU_TICKS ticks of each database, in $RUNS rounds"
# The CPU time of one tick: the median over the rounds of each round's mean.
per=$(((CPU_TICKS + RUNS - 1) / RUNS))
for ((r = 1; r <= RUNS; r++)); do
	for ((j = 0; j < n; j++)); do
		i=$(((j + r) % n))
		c=$(cpu_ms "${dbs[$i]}" "$per")
		cpu_t[i]+="$(awk -v c="$c" -v k="$per" 'BEGIN { printf "%.3f", c / k }') "
	done
done
[ ! -s "$run/tick.err" ] || die "a tick said something: $(cat "$run/tick.err")"
for db in "${dbs[@]}"; do
	[ -z "$("$cm" history --db "$db")" ] || die "a tick ran a job in $db: $("$cm" history --db "$db")"
done
note "status --json: $RUNS rounds"
status_t=()
for ((i = 0; i < n; i++)); do status_t+=(""); done
for ((r = 1; r <= RUNS; r++)); do
	for ((i = 1; i < n; i++)); do
		timed status_once "${dbs[$i]}" "$run/status.json"
		status_t[i]+="$T_WALL "
	done
done

# ---------------------------------------------------------------- results

say "== bench/sched.sh: cm-sched $cmv (built $built); $(nproc) cores, load $load0 at start; median of $RUNS runs after a warm-up, the sizes interleaved, warm page cache; TZ=UTC, jobs added at $SETUP_NOW, tick --now $NOW (nothing due); job_command /bin/false"
say "layout: $SITES sites, $NGROUPS groups of one segment each, servers spread evenly over the segments (one server import of $NGROUPS cluster reports), publish jobs spread over sites, groups and ${#SCHEDULES[@]} schedules: $(printf "'%s' " "${SCHEDULES[@]}" | sed "s/ $//")"
say "every tick exited 0 and said nothing; cm-sched history empty in every database afterwards"
tick_m=() cpu_m=()
for ((i = 0; i < n; i++)); do
	read -ra v <<<"${tick_t[$i]}"
	tick_m+=("$(median "${v[@]}")")
	read -ra v <<<"${cpu_t[$i]}"
	cpu_m+=("$(median "${v[@]}")")
	target=
	if [ "$i" = 0 ]; then
		target=" (empty database: start-up and open)"
	elif [ "${jobs_l[$i]}" = 1000 ] && [ "${srv_l[$i]}" = 10000 ]; then
		target=" (target < 1 s): $(big "$(awk -v t="${tick_m[$i]}" 'BEGIN { print (t < 1.0) ? "met" : "missed" }')")"
	fi
	say "$(printf 'sched tick, nothing due: %5s jobs, %6s servers: %s s%s' "$(group "${jobs_l[$i]}")" "$(group "${srv_l[$i]}")" "${tick_m[$i]}" "$target")"
	line="  runs ${tick_t[$i]% }; CPU per tick ${cpu_m[$i]} ms"
	if [ "$i" -gt 0 ]; then
		read -ra v <<<"${status_t[$i]}"
		line+="; status --json $(median "${v[@]}") s; setup (not counted) ${setup_l[$i]} s: server import ${import_l[$i]} s, $((jobs_l[i] - jobs_l[i - 1])) job adds ${adds_l[$i]} s; db $(group "$(fsize "${dbs[$i]}")") B"
	fi
	say "$line"
done

if [ "$n" -ge 3 ]; then
	a=$((n - 2)) b=$((n - 1))
	q=$(ratio "${tick_m[$b]}" "${tick_m[$a]}")
	lin=$(ratio "${jobs_l[$b]}" "${jobs_l[$a]}")
	say "tick cost ratio ${jobs_l[$b]}/${jobs_l[$a]} jobs = $q (linear would be $(awk -v l="$lin" 'BEGIN { printf "%.1f", l }'); at most linear: $(big "$(verdict "$q" "$lin")"))"
	# Per job, largest against smallest: <= 1 when the cost grows at most
	# linearly (the fixed start-up cost makes small sizes look dearer).
	pj_small=$(awk -v t="${tick_m[1]}" -v n="${jobs_l[1]}" 'BEGIN { printf "%.4f", t / n * 1000 }')
	pj_big=$(awk -v t="${tick_m[$b]}" -v n="${jobs_l[$b]}" 'BEGIN { printf "%.4f", t / n * 1000 }')
	q=$(ratio "$pj_big" "$pj_small")
	say "tick cost per job: ${jobs_l[1]} jobs $pj_small ms, ${jobs_l[$b]} jobs $pj_big ms; ratio ${jobs_l[$b]}/${jobs_l[1]} = $q (at most linear: <= 1.0: $(big "$(verdict "$q" 1.0)"))"
	# CPU time without the fixed cost (start-up, opening the database: the
	# empty database, interleaved with the others): what the jobs and servers
	# cost. (Wall time differences of a few ms are below the noise here.)
	c=()
	for ((i = 1; i < n; i++)); do
		c+=("$(awk -v t="${cpu_m[$i]}" -v e="${cpu_m[0]}" 'BEGIN { printf "%.2f", t - e }')")
	done
	say "tick CPU above the empty database, ms: $(for ((i = 1; i < n; i++)); do printf '%s jobs %s; ' "${jobs_l[$i]}" "${c[i - 1]}"; done)ratio ${jobs_l[$b]}/${jobs_l[$a]} = $(ratio "${c[b - 1]}" "${c[a - 1]}") (informational)"
fi
