#!/usr/bin/env bash
# bench/push.sh — cm-push side by side with a star of copies, a sequential
# chain, a pipelined chain and BitTorrent, on the namespace lab
# (tests/lab/lab.bash).
#
# Usage: CM_BIN=/path/to/build bench/push.sh        (as root: the lab needs it)
#
# For each configuration N:RATE of CONFIGS (default "8:200mbit 16:200mbit"):
# a lab of N+1 hosts, host 1 the manager (the source), hosts 2..N+1 the
# leaders (certificate names l2..l<N+1>), every host's egress capped with tbf
# at RATE (lab_rate: burst 64kb, latency 50ms; downloads are not capped). A
# random file of SIZE_MIB MiB (100) goes from host 1 to every leader by:
#   star   N parallel socat streams from the manager (what pscp does)
#   chain  sequential store-and-forward chain: socat hop 1->2, then 2->3, ...
#   pipe   pipelined chain (Kascade-like): each leader runs
#          socat TCP-LISTEN | tee FILE | socat - TCP:<next>
#   bt     BitTorrent: opentracker (info-hash whitelist) and an aria2c seeder
#          on the manager, aria2c on every leader; 256 KiB pieces (mktorrent
#          -l 18); the leaders keep seeding until every one has finished
#   tree   cm-push send --no-cut-through --no-deliver: the seed's whole-file
#          tree
#   cut    cm-push send --no-deliver: cut-through (the default)
#   kill   cm-push send --no-deliver --quorum N-1, and the agent of the
#          KILL_NTH-th leader (3rd: host 4, l4, a middle link of the chain)
#          killed with SIGKILL once its .part holds a third of the file
# cm-push runs with its defaults (serve --fanout 1 --stall 10, agent
# --idle 10, 256 KiB chunks, TLS 1.3); serve and the agents are started
# fresh (new state) before each run and are up before the clock starts.
#
# Time: from the start of the transfer (every listener, tracker, seeder,
# serve and agent already up; the torrent made beforehand) until every leader
# has its copy: star/chain/pipe when the last socat exits, bt the last
# --on-bt-download-complete hook, cm-push the exit of `cm-push send` (wall
# time measured here; the report's own "seconds", the job's time as the
# manager measured it, is printed beside it). Every copy is checked with
# sha256sum against the original (every leader but the killed one); a run
# with a missing or wrong copy, or a failed transfer, is reported as FAILED
# and not timed. Manager egress is eth0's tx_bytes in host 1 (frames, so
# Ethernet/IP/TCP headers count) before and after each run, printed as a
# multiple of the file's bytes M. CPU busy is the whole machine's (from
# /proc/stat) during the run: 100% means both cores were saturated.
#
# M/B = file bytes x 8 / RATE. tbf counts each frame (IP length + 14 B): a
# TCP segment with timestamps carries 1448 B in 1514 B, so a single copy
# takes at least 1.046 x M/B on these links.
#
# Star and chain run SLOW_RUNS times (1), the other modes RUNS times (3),
# interleaved; each mode's time is the median over its good runs.
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md; progress goes to stderr. Times are wall-clock on a shared
# 2-core machine: printed, never asserted. The exit status says only whether
# the benchmark ran.
#
# Environment: CM_BIN (dir holding cm-push; default ../build; the binary is
# copied at the start, so a rebuild meanwhile does not mix versions),
# CONFIGS, SIZE_MIB (100), MODES ("star chain pipe bt tree cut kill"), RUNS
# (3), SLOW_RUNS (1), KILL_NTH (3), TIMEOUT (300 s per transfer), WORK
# (where the copies go; /dev/shm), CM_VERBOSE=1 to run serve and the agents
# with -v, KEEP=1 to keep the logs (bench/work/push.*; also kept when a run
# failed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"
# shellcheck source=tests/lab/lab.bash
. "$here/../tests/lab/lab.bash"

CM_BIN=${CM_BIN:-$here/../build}
CONFIGS=${CONFIGS:-8:200mbit 16:200mbit}
SIZE_MIB=${SIZE_MIB:-100}
MODES=${MODES:-star chain pipe bt tree cut kill}
RUNS=${RUNS:-3}
SLOW_RUNS=${SLOW_RUNS:-1}
KILL_NTH=${KILL_NTH:-3}
TIMEOUT=${TIMEOUT:-300}
WORK=${WORK:-/dev/shm}
CM_VERBOSE=${CM_VERBOSE:-0}
KEEP=${KEEP:-0}

PORT=5000     # socat modes
MPORT=7800    # cm-push serve
APORT=7801    # cm-push agent
BTPORT=6881   # aria2c
TRPORT=6969   # opentracker

[ -x "$CM_BIN/cm-push" ] || die "$CM_BIN/cm-push not found (build with make, or point CM_BIN at the build dir)"
need socat aria2c opentracker mktorrent sha256sum python3 timeout ss tc ip awk
lab_need_root || die "the lab needs root"

maxn=0
for c in $CONFIGS; do
	n=${c%%:*}
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 2 ] || [ "$n" -gt 60 ]; then
		die "bad configuration $c (N:RATE, 2 <= N <= 60)"
	fi
	if [[ " $MODES " == *" kill "* ]] && { [ "$KILL_NTH" -lt 1 ] || [ "$KILL_NTH" -ge "$n" ]; }; then
		die "KILL_NTH=$KILL_NTH must name a leader with another behind it (N=$n)"
	fi
	[ "$n" -gt "$maxn" ] && maxn=$n
done

# Room for the original, N copies and the manager's (a hard link), twice over.
need_mb=$(((maxn + 2) * SIZE_MIB * 2 + 256))
free_mb=$(df -m --output=avail "$WORK" | tail -n 1)
mem_mb=$(free -m | awk '/^Mem:/ { print $7 }')
note "$WORK: $free_mb MB free; memory available: $mem_mb MB; needs about $need_mb MB"
[ "$free_mb" -gt "$need_mb" ] || die "$WORK has $free_mb MB free, needs $need_mb"
case $(stat -f -c %T "$WORK") in
tmpfs | ramfs) [ "$mem_mb" -gt "$need_mb" ] || die "$WORK is in RAM and only $mem_mb MB are available" ;;
esac

work=$here/work
mkdir -p "$work"
logs=$(mktemp -d "$work/push.XXXXXX")
data=$(mktemp -d "$WORK/cm-bench-push.XXXXXX")
chmod 755 "$data" # opentracker drops to nobody and reads its whitelist here
FAILED=0

cleanup() {
	local p
	for p in $(jobs -pr); do kill -TERM "$p" 2>/dev/null || true; done
	lab_down
	for p in $(jobs -pr); do kill -KILL "$p" 2>/dev/null || true; done
	for p in $(jobs -p); do wait "$p" 2>/dev/null || true; done
	rm -rf "$data"
	if [ "$KEEP" = 1 ] || [ "$FAILED" = 1 ]; then
		note "logs kept in $logs"
	else
		rm -rf "$logs"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$data/bin
mkdir "$bin"
cp "$CM_BIN/cm-push" "$bin/cm-push"
cm=$bin/cm-push
cmv="$("$cm" --version | awk '{ print $NF }'), built $(date -r "$CM_BIN/cm-push" '+%F %H:%M')"
vflag=()
[ "$CM_VERBOSE" = 1 ] && vflag=(-v)

# ---------------------------------------------------------------- helpers

# bgrun I LOG CMD... — CMD in host I in the background, as a child of this
# shell (so that it can be waited for); sets PID.
bgrun() {
	local i=$1 log=$2
	shift 2
	# Not lab_bg: it disowns, and stop/sweep below go by this shell's jobs.
	ip netns exec "$(_lab_ns "$i")" "$@" >"$log" 2>&1 &
	PID=$!
}

# stop PID... — SIGTERM, up to 5 s, then SIGKILL; reaped. Only children of
# this shell still running are signalled (a reaped pid may be someone
# else's by now).
running() { jobs -pr | grep -qx "$1"; }
none_running() {
	local p
	for p in "$@"; do ! running "$p" || return 1; done
}
stop() {
	local p
	for p in "$@"; do ! running "$p" || kill -TERM "$p" 2>/dev/null || true; done
	if ! wait_for 5 none_running "$@"; then
		for p in "$@"; do ! running "$p" || kill -KILL "$p" 2>/dev/null || true; done
	fi
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
# sweep — stop every background job still running (after each run).
sweep() {
	local p pids=()
	for p in $(jobs -pr); do pids+=("$p"); done
	[ ${#pids[@]} -eq 0 ] || stop "${pids[@]}"
}

listening() { lab_exec "$1" ss -Hltn "sport = :$2" | grep -q .; }
wait_listen() { # I PORT
	wait_for 10 listening "$1" "$2" || {
		note "host $1: nothing listens on port $2 after 10 s"
		return 1
	}
}

leaders() { seq 2 $((N + 1)); }
egress() { lab_exec 1 cat /sys/class/net/eth0/statistics/tx_bytes; }
cpu_sample() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }

# begin / end — the clock, the manager's egress and the CPU around a run.
begin() {
	E0=$(egress)
	read -r CB0 CT0 <<<"$(cpu_sample)"
	T0=$(now_ns)
}
end() { # [T1_NS]
	T1=${1:-$(now_ns)}
	E1=$(egress)
	read -r CB1 CT1 <<<"$(cpu_sample)"
	R_SECS=$(secs $((T1 - T0)))
	R_EGRESS=$((E1 - E0))
	R_CPU=$(awk -v b=$((CB1 - CB0)) -v t=$((CT1 - CT0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')
	R_LOAD=$(cut -d' ' -f1 /proc/loadavg)
}

# children_cpu — CPU seconds (user + system) of this shell's children that
# have been waited for, in clock ticks (/proc/PID/stat cutime + cstime).
children_cpu() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }


# done_times — each leader's completion (its done file) in seconds from T0.
done_times() {
	local i out=()
	for i in $(leaders); do
		[ -s "$data/h$i/done" ] && out+=("$(secs $(($(cat "$data/h$i/done") - T0)))")
	done
	spread "${out[@]}"
}

# verify SKIP PATH_FN — check every leader's copy (PATH_FN I prints it)
# except host SKIP's; sets R_OK, R_WANT, R_BAD.
verify() {
	local skip=$1 fn=$2 i f
	R_OK=0 R_WANT=0 R_BAD=""
	for i in $(leaders); do
		[ "$i" = "$skip" ] && continue
		R_WANT=$((R_WANT + 1))
		f=$("$fn" "$i")
		if [ -f "$f" ] && [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$want" ]; then
			R_OK=$((R_OK + 1))
		else
			R_BAD+=" l$i"
		fi
	done
}
socat_copy() { printf '%s' "$data/h$1/payload.bin"; }
cm_copy() {
	local f
	for f in "$data/a$1"/*/payload.bin; do
		printf '%s' "$f"
		return
	done
}

# ---------------------------------------------------------------- modes
# Each sets R_SECS, R_EGRESS, R_CPU, R_PER (first/median/last leader) and
# R_NOTE, and returns non-zero when the transfer failed.

mode_star() {
	local i p pids=() rc=0
	for i in $(leaders); do
		bgrun "$i" "$logs/$tag-r$i.log" timeout "$TIMEOUT" sh -c \
			"socat -u TCP-LISTEN:$PORT,bind=$(lab_ip "$i"),reuseaddr CREATE:$data/h$i/payload.bin && date +%s%N >$data/h$i/done"
		pids+=("$PID")
	done
	for i in $(leaders); do wait_listen "$i" "$PORT" || return 1; done
	begin
	for i in $(leaders); do
		bgrun 1 "$logs/$tag-s$i.log" timeout "$TIMEOUT" socat -u "OPEN:$payload" "TCP:$(lab_ip "$i"):$PORT"
		pids+=("$PID")
	done
	for p in "${pids[@]}"; do wait "$p" || rc=$?; done
	end
	R_PER=$(done_times)
	return "$rc"
}

# hop FROM TO — one whole-file copy, socat to socat.
hop() {
	local from=$1 to=$2 src=$payload r rc=0
	[ "$from" = 1 ] || src=$data/h$from/payload.bin
	bgrun "$to" "$logs/$tag-r$to.log" timeout "$TIMEOUT" \
		socat -u "TCP-LISTEN:$PORT,bind=$(lab_ip "$to"),reuseaddr" "CREATE:$data/h$to/payload.bin"
	r=$PID
	wait_listen "$to" "$PORT" || return 1
	lab_exec "$from" timeout "$TIMEOUT" socat -u "OPEN:$src" "TCP:$(lab_ip "$to"):$PORT" \
		>"$logs/$tag-s$to.log" 2>&1 || rc=$?
	wait "$r" || rc=$?
	now_ns >"$data/h$to/done"
	return "$rc"
}

mode_chain() {
	local i prev=1 rc=0
	begin
	for i in $(leaders); do
		hop "$prev" "$i" || {
			rc=1
			break
		}
		prev=$i
	done
	end
	R_PER=$(done_times)
	return "$rc"
}

mode_pipe() {
	local i p pids=() rc=0 last=$((N + 1)) cmd
	# from the tail, so that every listener is up before its upstream connects
	for i in $(seq "$last" -1 2); do
		cmd="socat -u TCP-LISTEN:$PORT,bind=$(lab_ip "$i"),reuseaddr"
		if [ "$i" = "$last" ]; then
			cmd+=" CREATE:$data/h$i/payload.bin"
		else
			cmd+=" STDOUT | tee $data/h$i/payload.bin | socat -u STDIN TCP:$(lab_ip $((i + 1))):$PORT"
		fi
		bgrun "$i" "$logs/$tag-h$i.log" timeout "$TIMEOUT" sh -c "$cmd && date +%s%N >$data/h$i/done"
		pids+=("$PID")
		wait_listen "$i" "$PORT" || return 1
	done
	begin
	lab_exec 1 timeout "$TIMEOUT" socat -u "OPEN:$payload" "TCP:$(lab_ip 2):$PORT" >"$logs/$tag-s.log" 2>&1 || rc=$?
	for p in "${pids[@]}"; do wait "$p" || rc=$?; done
	end
	R_PER=$(done_times)
	return "$rc"
}

bt_all_done() {
	local i
	for i in $(leaders); do [ -s "$data/h$i/done" ] || return 1; done
}
seeded() { # the tracker counts the manager's aria2c as a seeder
	lab_exec 1 python3 - "$(lab_ip 1)" "$infohash" <<-'PY'
		import re, sys, urllib.parse, urllib.request
		h = urllib.parse.quote(bytes.fromhex(sys.argv[2]))
		d = urllib.request.urlopen("http://%s:6969/scrape?info_hash=%s" % (sys.argv[1], h), timeout=2).read()
		m = re.search(rb"8:completei(\d+)e", d)
		sys.exit(0 if m and int(m.group(1)) >= 1 else 1)
	PY
}

mode_bt() {
	local i last=0 t
	local common=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --disable-ipv6=true
		--seed-ratio=0.0 --file-allocation=none --allow-overwrite=true --auto-file-renaming=false
		--bt-max-peers=0 --summary-interval=0 --console-log-level=warn --bt-tracker-interval=2
		--bt-save-metadata=false --max-overall-upload-limit=0 "--listen-port=$BTPORT")
	# the daemons run bare (stopped by pid, never left to a timeout's child)
	bgrun 1 "$logs/$tag-tracker.log" opentracker -i "$(lab_ip 1)" -p "$TRPORT" -P "$TRPORT" \
		-d / -w "$data/bt/whitelist"
	wait_listen 1 "$TRPORT" || return 1
	bgrun 1 "$logs/$tag-seed.log" aria2c "${common[@]}" --check-integrity=true \
		--dir="$(dirname "$payload")" "$data/bt/payload.torrent"
	wait_listen 1 "$BTPORT" || return 1
	wait_for 20 seeded 2>/dev/null || {
		note "bt: the tracker never saw the seeder"
		return 1
	}
	begin
	for i in $(leaders); do
		bgrun "$i" "$logs/$tag-l$i.log" aria2c "${common[@]}" --dir="$data/h$i" \
			--on-bt-download-complete="$data/bt/done.sh" "$data/bt/payload.torrent"
	done
	wait_for "$TIMEOUT" bt_all_done || {
		end
		note "bt: not every leader finished in $TIMEOUT s"
		return 1
	}
	# the time is the last leader's hook, not when this loop noticed it
	for i in $(leaders); do
		t=$(cat "$data/h$i/done")
		[ "$t" -gt "$last" ] && last=$t
	done
	end "$last"
	R_PER=$(done_times)
	sweep # the aria2c seeding on, and the tracker
}

cm_up() { # serve and an agent on every leader, fresh
	local i
	rm -rf "$data/state"
	bgrun 1 "$logs/$tag-serve.log" "$cm" serve "${vflag[@]}" --tls "$data/tls" --listen "$(lab_ip 1):$MPORT" \
		--state "$data/state"
	SERVE=$PID
	wait_listen 1 "$MPORT" || return 1
	for i in $(leaders); do
		rm -rf "$data/a$i"
		bgrun "$i" "$logs/$tag-agent$i.log" "$cm" agent "${vflag[@]}" --tls "$data/tls" --name "l$i" \
			--listen "$(lab_ip "$i"):$APORT" --manager "$(lab_ip 1):$MPORT" --dir "$data/a$i"
		AGENT[i]=$PID
	done
	for i in $(leaders); do wait_listen "$i" "$APORT" || return 1; done
}

# cm_cpu — CPU seconds (user + system) used by serve and by the agents
# still running, from /proc (they are read before being stopped); sets R_CMCPU.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cm_cpu() {
	local i s a=0 m=0 c
	s=$(proc_cpu "$SERVE")
	for i in $(leaders); do
		[ "$i" = "$VICTIM" ] && continue
		c=$(proc_cpu "${AGENT[i]}")
		a=$(awk -v a="$a" -v c="$c" 'BEGIN { print a + c }')
		m=$(awk -v m="$m" -v c="$c" 'BEGIN { print (c > m) ? c : m }')
	done
	R_CMCPU="cpu-s serve $s, agents $a (largest $m)"
}

part_at_least() { # I BYTES SEND_PID: host I's .part holds BYTES, or send is over
	local f
	running "$3" || return 0
	for f in "$data/a$1"/*/payload.bin.part "$data/a$1"/*/payload.bin; do
		[ -f "$f" ] && [ "$(stat -c %s "$f")" -ge "$2" ] && return 0
	done
	return 1
}

# mode_cm tree|cut|kill
mode_cm() {
	local kind=$1 opts=(--no-deliver) p rc=0
	VICTIM=""
	KILLED_AT=""
	case $kind in
	tree) opts+=(--no-cut-through) ;;
	kill)
		VICTIM=$((KILL_NTH + 1))
		opts+=(--quorum $((N - 1)))
		;;
	esac
	cm_up || return 1
	begin
	lab_exec 1 timeout "$TIMEOUT" "$cm" send --json --tls "$data/tls" --manager "$(lab_ip 1):$MPORT" \
		--leaders "$data/leaders" "${opts[@]}" "$payload" >"$logs/$tag.json" 2>"$logs/$tag-send.log" &
	p=$!
	if [ -n "$VICTIM" ]; then
		if wait_for "$TIMEOUT" part_at_least "$VICTIM" $((size / 3)) "$p" && running "$p"; then
			kill -KILL "${AGENT[VICTIM]}"
			KILLED_AT=$(secs $(($(now_ns) - T0)))
			wait "${AGENT[VICTIM]}" 2>/dev/null || true
		else
			note "$tag: l$VICTIM never held a third of the file while send ran; nobody killed"
		fi
	fi
	wait "$p" || rc=$?
	end
	cm_cpu
	sweep # serve and the agents
	return "$rc"
}

# cm_report JSON VICTIM — "JOB_SECONDS PER DETAILS" from send's report.
cm_report() {
	python3 - "$1" "$2" <<-'PY'
		import json, sys
		try:
		    r = json.load(open(sys.argv[1]))
		except Exception as e:
		    print("- - no-report(%s)" % type(e).__name__)
		    sys.exit(0)
		victim = "l" + sys.argv[2] if sys.argv[2] else None
		ok = [l for l in r["leaders"] if l["id"] != victim and l["state"] in ("delivered", "complete")]
		# each leader's completion from the job's start, like the done files
		# of the other modes (a leader's own "seconds" start when it is notified)
		s = sorted((l["completed_ms"] - r["created_ms"]) / 1000 for l in ok)
		per = "%.3f/%.3f/%.3f" % (s[0], s[(len(s) - 1) // 2], s[-1]) if s else "-"
		src = " ".join("%s<%s" % (l["id"], l.get("source") or "?") for l in r["leaders"])
		extra = []
		for l in r["leaders"]:
		    if l.get("failed_sources"):
		        extra.append("%s lost %s" % (l["id"], ",".join(l["failed_sources"])))
		    if l["state"] not in ("delivered", "complete"):
		        extra.append("%s %s (%s)" % (l["id"], l["state"], l.get("failure", "")))
		d = "sources: " + src + ("; " + "; ".join(extra) if extra else "")
		print("%.3f %s %s" % (r["seconds"], per, d.replace("\t", " ").replace("\n", " ")))
	PY
}

# run_one MODE REP — one run, verified, appended to $results.
run_one() {
	local mode=$1 rep=$2 rc=0 i status job="-" details="" skip="" c0
	tag="n$N-$RATE-$mode-$rep"
	note "$tag"
	for i in $(leaders); do
		rm -rf "$data/h$i" "$data/a$i"
		mkdir -p "$data/h$i"
	done
	R_SECS=- R_EGRESS=0 R_CPU=- R_PER=- VICTIM="" KILLED_AT="" R_CMCPU="" R_LOAD=-
	c0=$(children_cpu)
	case $mode in
	star | chain | pipe | bt) "mode_$mode" || rc=$? ;;
	tree | cut | kill) mode_cm "$mode" || rc=$? ;;
	*) die "unknown mode $mode" ;;
	esac
	sweep
	# every process of the run has been waited for: what they used in all
	R_TOOLCPU=$(awk -v a="$c0" -v b="$(children_cpu)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz }')
	case $mode in
	tree | cut | kill)
		skip=$VICTIM
		verify "$skip" cm_copy
		read -r job R_PER details <<<"$(cm_report "$logs/$tag.json" "$VICTIM")"
		[ -z "$R_CMCPU" ] || details="$R_CMCPU; $details"
		[ -z "$KILLED_AT" ] || details="l$VICTIM killed at $KILLED_AT s (SIGKILL); $details"
		;;
	*) verify "" socat_copy ;;
	esac
	status=ok
	if [ "$rc" != 0 ] || [ "$R_OK" != "$R_WANT" ] || [ "$R_SECS" = - ]; then
		status=FAILED
		FAILED=1
		note "$tag: FAILED (rc $rc; $R_OK/$R_WANT copies verified; bad:${R_BAD:- none}; logs in $logs)"
	fi
	if [ "$mode" = kill ] && [ -z "$KILLED_AT" ]; then
		status=FAILED
		FAILED=1
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$rep" "$status" "$R_SECS" "$job" \
		"$R_OK" "$R_WANT" "$R_EGRESS" "$R_CPU" "$R_PER" "$rc" "${details:--}" "$R_LOAD" "$R_TOOLCPU" >>"$results"
	note "$tag: $status ${R_SECS} s, job ${job}, $R_OK/$R_WANT verified, egress $R_EGRESS B, cpu ${R_CPU}%, load $R_LOAD, tool cpu-s $R_TOOLCPU, leaders $R_PER${details:+; $details}"
	for i in $(leaders); do rm -rf "$data/h$i" "$data/a$i"; done
	rm -rf "$data/state"
}

label() {
	case $1 in
	star) printf 'star (N socat from manager)' ;;
	chain) printf 'chain (hop after hop)' ;;
	pipe) printf 'pipe (socat|tee|socat)' ;;
	bt) printf 'bt (aria2c+opentracker)' ;;
	tree) printf 'cm-push --no-cut-through' ;;
	cut) printf 'cm-push (cut-through)' ;;
	kill) printf 'cm-push, l%s killed' "$((KILL_NTH + 1))" ;;
	esac
}

# field MODE COL — column COL of the good runs of MODE, one a line.
field() { awk -F'\t' -v m="$1" -v c="$2" '$1 == m && $3 == "ok" { print $c }' "$results"; }
# medrow MODE — the good run of MODE with the median time (whole row).
medrow() {
	awk -F'\t' -v m="$1" '$1 == m && $3 == "ok"' "$results" | sort -t$'\t' -k4,4g |
		awk '{ r[NR] = $0 } END { if (NR) print r[int((NR + 1) / 2)] }'
}
# verdict_up VALUE LIMIT MIN|MAX — met or MISSED.
verdict_up() {
	awk -v v="$1" -v l="$2" -v k="$3" 'BEGIN {
		ok = (v != "n/a" && v != "" && v != "-") && (k == "MAX" ? v + 0 <= l : v + 0 >= l)
		print ok ? "met" : "MISSED" }'
}

# ---------------------------------------------------------------- setup

load0=$(cut -d' ' -f1 /proc/loadavg)
payload=$data/src/payload.bin
mkdir -p "$data/src" "$data/bt"
note "making $SIZE_MIB MiB of random data"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$payload"
size=$(fsize "$payload")
want=$(sha256sum <"$payload" | cut -d' ' -f1)

"$cm" ca init "$data/tls" >/dev/null
names=()
for i in $(seq 2 $((maxn + 1))); do names+=("l$i"); done
"$cm" ca issue "$data/tls" manager "${names[@]}" >/dev/null

# The torrent and the tracker's whitelist, made once (not timed): the tracker
# is always host 1, 10.77.1.11.
mktorrent -a "http://$(lab_ip 1):$TRPORT/announce" -l 18 -o "$data/bt/payload.torrent" "$payload" >/dev/null
infohash=$(aria2c -S "$data/bt/payload.torrent" | awk '/^Info Hash:/ { print $3 }')
[ -n "$infohash" ] || die "no info hash in the torrent"
printf '%s\n' "$infohash" >"$data/bt/whitelist"
chmod 755 "$data/bt"
chmod 644 "$data/bt/whitelist"
# shellcheck disable=SC2016  # the hook's own $3
printf '#!/bin/sh\ndate +%%s%%N >"$(dirname "$3")/done"\n' >"$data/bt/done.sh"
chmod 755 "$data/bt/done.sh"

socatv=$(socat -V 2>/dev/null | awk '/socat version/ { print $3; exit }')
ariav=$(aria2c --version | awk 'NR == 1 { print $3 }')
otv=$(dpkg-query -W -f '${Version}' opentracker 2>/dev/null || echo '?')
say "== bench/push.sh: cm-push $cmv; socat $socatv, aria2 $ariav, opentracker $otv, mktorrent $(mktorrent -h 2>&1 | awk 'NR == 1 { print $2 }'); $(nproc) cores, load $load0 at start"
say "lab: host 1 = manager (source), hosts 2..N+1 = leaders l2..; namespaces on a bridge (tests/lab/lab.bash); every host's egress tbf RATE burst 64kb latency 50ms, downloads uncapped; $SIZE_MIB MiB random file ($(group "$size") B) in $WORK; star/chain x$SLOW_RUNS, other modes x$RUNS, interleaved, median shown"
say "time = transfer start (listeners/tracker/seeder/serve/agents up, torrent made) to the last leader's copy; cm-push = wall time of 'cm-push send' (job = the report's \"seconds\"); egress = manager eth0 tx_bytes / M; cpu-s = CPU seconds (user + system) used by the run's own processes (socat/tee, aria2c/opentracker, serve + agents + send; kernel networking done in their context included), cpu % = the whole machine busy during the run, load = 1-min load average at its end (both include other sessions); leaders = completion of the first/median/last leader from the start; the columns after the time are those of the median run; every copy sha256-checked (all leaders but the killed one), a run with a bad copy is FAILED and not timed"

# ---------------------------------------------------------------- runs

declare -A TGT=()
for c in $CONFIGS; do
	N=${c%%:*}
	RATE=${c#*:}
	bps=$(awk -v r="$RATE" 'BEGIN { v = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
		if (u == "kbit") v *= 1e3; else if (u == "mbit") v *= 1e6; else if (u == "gbit") v *= 1e9
		else if (u != "bit" && u != "") v = 0
		printf "%.0f", v }')
	[ "$bps" -gt 0 ] || die "bad rate $RATE (kbit, mbit or gbit)"
	mb=$(awk -v s="$size" -v r="$bps" 'BEGIN { printf "%.3f", s * 8 / r }')
	floor=$(awk -v m="$mb" 'BEGIN { printf "%.3f", m * 1514 / 1448 }')
	results=$logs/results-$N-$RATE.tsv
	: >"$results"
	# shellcheck disable=SC2034  # lab.bash names everything after it
	LAB_PREFIX="bpu$$n$N"
	lab_up bpu $((N + 1)) || die "lab_up failed"
	for i in $(seq 1 $((N + 1))); do lab_rate "$i" "$RATE"; done
	: >"$data/leaders"
	for i in $(leaders); do echo "l$i $(lab_ip "$i"):$APORT" >>"$data/leaders"; done
	declare -a AGENT=()
	for rep in $(seq 1 "$RUNS"); do
		for mode in $MODES; do
			case $mode in star | chain) [ "$rep" -le "$SLOW_RUNS" ] || continue ;; esac
			run_one "$mode" "$rep"
		done
	done
	lab_down

	say "-- N=$N leaders, rate $RATE: M = $(group "$size") B, M/B = $mb s (a TCP copy at best $floor s = 1.046 x M/B: frames)"
	say "$(printf '%-26s %8s %7s %8s %9s %6s %6s %5s %-23s %-6s %s' mode 'time s' 'x M/B' verified egress/M 'cpu-s' 'cpu %' load 'leaders first/med/last' 'job s' 'all runs (s)')"
	for mode in $MODES; do
		all=$(awk -F'\t' -v m="$mode" '$1 == m { printf "%s%s", sep, ($3 == "ok" ? $4 : "FAILED"); sep = " " }' "$results")
		row=$(medrow "$mode")
		if [ -z "$row" ]; then
			say "$(printf '%-26s %8s %7s %8s %9s %6s %6s %5s %-23s %-6s %s' "$(label "$mode")" FAILED - - - - - - - - "$all")"
			continue
		fi
		IFS=$'\t' read -r _ _ _ t job _ _ eg cpu per _ details load tcpu <<<"$row"
		# shellcheck disable=SC2046
		t=$(median $(field "$mode" 4))
		nok=$(awk -F'\t' -v m="$mode" '$1 == m { n++; o += $6; w += $7 } END { printf "%d/%d", o, w }' "$results")
		say "$(printf '%-26s %8s %7s %8s %9s %6s %6s %5s %-23s %-6s %s' "$(label "$mode")" "$t" "$(ratio "$t" "$mb")" \
			"$nok" "$(ratio "$eg" "$size")" "$tcpu" "$cpu" "$load" "$per" "$job" "$all")"
		TGT[$N.$RATE.$mode]=$t
		TGT[$N.$RATE.$mode.egress]=$(ratio "$eg" "$size")
		TGT[$N.$RATE.$mode.cpu]=$cpu
		case $mode in
		tree | cut | kill) say "$(printf '%-26s median run: %s' '' "$details")" ;;
		esac
	done
	# every cut-through run's egress; the target takes the largest
	egmax=$(field cut 8 | sort -g | tail -n 1)
	TGT[$N.$RATE.cut.egressmax]=$( [ -n "$egmax" ] && ratio "$egmax" "$size" || echo n/a)
	TGT[$N.$RATE.mb]=$mb

	say "-- N=$N, rate $RATE: targets"
	t=${TGT[$N.$RATE.cut]:-}
	if [ -n "$t" ]; then
		r=$(ratio "$t" "$mb")
		say "cm-push N=$N: $t s = $r x M/B (target <= 1.25): $(verdict_up "$r" 1.25 MAX)"
	else
		say "cm-push N=$N: FAILED (no good run) (target <= 1.25): MISSED"
	fi
	b=${TGT[$N.$RATE.bt]:-}
	if [ -n "$b" ] && [ -n "$t" ]; then
		r=$(ratio "$b" "$t")
		say "N=$N: bt/cm-push = $r (target >= 1.5): $(verdict_up "$r" 1.5 MIN)"
	elif [[ " $MODES " == *" bt "* ]]; then
		say "N=$N: bt/cm-push = n/a (bt or cm-push failed) (target >= 1.5): MISSED"
	fi
	r=${TGT[$N.$RATE.cut.egressmax]}
	say "N=$N: manager egress = $r x M (target <= 2): $(verdict_up "$r" 2 MAX) (largest of the cut-through runs)"
	k=${TGT[$N.$RATE.kill]:-}
	if [ -n "$k" ]; then
		r=$(ratio "$k" "$mb")
		say "N=$N: killed leader: $r x M/B (target <= 2): $(verdict_up "$r" 2 MAX) ($k s)"
	elif [[ " $MODES " == *" kill "* ]]; then
		say "N=$N: killed leader: FAILED (no good run) (target <= 2): MISSED"
	fi
	c=${TGT[$N.$RATE.cut.cpu]:-}
	if [ -n "$c" ] && [ "$c" != - ] && [ "$c" -ge 90 ]; then
		say "N=$N, rate $RATE: the machine's $(nproc) cores were ${c}% busy during the median cut-through run (cm-push's own share is its cpu-s above; the rest is the lab's kernel networking and other sessions): CPU-bound, the links are not the only limit"
	fi
done
