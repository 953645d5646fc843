#!/usr/bin/env bash
# bench/elect.sh — cm-elect side by side with keepalived (VRRPv3) on the
# namespace lab (tests/lab/lab.bash).
#
# Usage (as root): CM_BIN=/path/to/build bench/elect.sh
#
# 1. Failover. Five hosts, priorities 150, 140 ... 110, preemption on (both
#    tools' default), at equal advertisement intervals (1 s and 0.1 s):
#    keepalived (`version 3`, `advert_int T`) and cm-elect (`--interval T`).
#    TRIALS times: kill -9 the leader (for keepalived its VRRP child, with
#    the parent stopped first so it neither respawns the child nor makes it
#    resign), then measure the time from the kill to the new leader's first
#    leader message on the wire (VRRP advert; cm-elect LA), as tcpdump sees
#    it in host 5 (never killed; kernel timestamps on the same clock as the
#    kill). The notify / --on-change hook's timestamp is printed beside it.
#    Between trials the killed host comes back; with preemption it takes the
#    lead back, and the next kill waits until every host agrees on it again,
#    then a random fraction of an interval so kills land anywhere in the
#    advertisement cycle.
# 2. Loss. On the same running hosts: every host drops LOSS_PCT % of the
#    control packets it receives (nftables on input, UDP and VRRP alike) for
#    LOSS_SECS; counted are the transitions to leader (MASTER) in that window
#    (the initial election is before it), by the hooks and on the wire.
# 3. Registration. BIG hosts (64; each runs cm-elect --interval 1): the time
#    from starting them until the leader's state file lists all of them and
#    every one's state file says it is registered; cold (all start at once,
#    so the first election is included) and warm (the leader is up first).
#    keepalived has no membership: n/a.
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md. Times are wall-clock on a shared machine: printed, never
# asserted. The exit status says only whether the benchmark ran.
#
# Environment: CM_BIN (dir holding cm-elect; default ../build), TRIALS (20),
# INTERVALS ("1 0.1"), LOSS_PCT (10), LOSS_SECS (60), BIG (64), BIG_RUNS (3),
# PHASES ("failover big": which parts run; loss runs inside failover),
# KEEP=1 to keep the run directory (logs, captures, state files).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"
# shellcheck source=tests/lab/lab.bash
. "$here/../tests/lab/lab.bash"

CM_BIN=${CM_BIN:-$here/../build}
TRIALS=${TRIALS:-20}
INTERVALS=${INTERVALS:-1 0.1}
LOSS_PCT=${LOSS_PCT:-10}
LOSS_SECS=${LOSS_SECS:-60}
BIG=${BIG:-64}
BIG_RUNS=${BIG_RUNS:-3}
PHASES=${PHASES:-failover big}
KEEP=${KEEP:-0}
N=5

[ -x "$CM_BIN/cm-elect" ] || die "$CM_BIN/cm-elect not found (build with make, or point CM_BIN at the build dir)"
[ "$(id -u)" -eq 0 ] || die "the namespace lab needs root"
need keepalived tcpdump nft ip python3

# Everything of this run lives under /run: keepalived's script security
# refuses notify scripts in a directory others can write (such as /tmp).
run=$(mktemp -d /run/cm-bench-elect.XXXXXX)
chmod 755 "$run"
# A copy of the binary: others may rebuild the tree while this runs.
cp "$CM_BIN/cm-elect" "$run/cm-elect"
elect=$run/cm-elect
# cm-elect's state files go where its default (/run/cm) lives on a real
# host: a tmpfs. (This VM's /run is on the root ext4, where every state
# write's fsync queues behind whatever else the disk is doing.)
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	sd=$(mktemp -d /dev/shm/cm-bench-elect.XXXXXX)
else
	sd=$run
fi

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	lab_down
	if [ "$KEEP" = 1 ]; then
		note "kept $run $sd"
	else
		rm -rf "$run" "$sd"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'note "failed at line $LINENO"' ERR

# ------------------------------------------------------------ small tools

# t_now — the wall clock in seconds with microseconds (no fork).
t_now() { printf '%s' "$EPOCHREALTIME"; }

# fsub A B — A - B with 3 decimals.
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# fmax A B — the larger.
fmax() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) ? a : b }'; }

# fmul A B
fmul() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a * b }'; }

# ceil_s X — whole seconds, at least X.
ceil_s() { awk -v a="$1" 'BEGIN { c = int(a); if (c < a) c++; print c }'; }

# phase_sleep T — a random fraction of T seconds.
phase_sleep() { sleep "$(awk -v t="$1" -v r="$RANDOM" 'BEGIN { printf "%.3f", t * r / 32768 }')"; }

prio() { echo $((160 - 10 * $1)); } # host 1 = 150 ... host 5 = 110

# loss_on I PCT — host I drops PCT % of the control packets it receives:
# lab_loss's rule for UDP (cm-elect), and the same for VRRP (IP protocol
# 112, keepalived), each with its own counter.
loss_on() {
	lab_exec "$1" nft -f - <<EOF
table inet benchloss
delete table inet benchloss
table inet benchloss {
	chain in {
		type filter hook input priority 0;
		meta l4proto udp numgen random mod 100 < $2 counter drop
		meta l4proto 112 numgen random mod 100 < $2 counter drop
	}
}
EOF
}
loss_off() { lab_exec "$1" nft delete table inet benchloss 2>/dev/null || true; }
loss_dropped() { # I udp|vrrp — packets of that kind dropped so far
	lab_exec "$1" nft list table inet benchloss 2>/dev/null |
		awk -v k="$2" '/counter packets/ && ((k == "udp" && / udp /) || (k == "vrrp" && !/ udp /)) {
			for (i = 1; i < NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }'
}

# ------------------------------------------------------------ capture

# cap_start FILE — tcpdump in host 5 (never killed) writes every control
# packet (VRRP, and UDP to the cm-elect port) to FILE, packet-buffered.
cap_start() {
	CAP=$1
	lab_bg "$N" "$run/tcpdump.log" tcpdump -i eth0 -n -U -s 128 -w "$CAP" 'ip proto 112 or udp port 7701' >"$run/tcpdump.pid"
	wait_for 5 grep -q 'listening on' "$run/tcpdump.log" || die "tcpdump did not start: $(cat "$run/tcpdump.log")"
}
# gone PID — wait (at most 10 s) until PID has exited. lab_bg disowns what
# it starts, so `wait` cannot: a keepalived still exiting when the next one
# starts would remove the new one's pid files.
gone() {
	local n
	for ((n = 0; n < 200; n++)); do
		kill -0 "$1" 2>/dev/null || return 0
		[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 0
		sleep 0.05
	done
	note "process $1 still there after 10 s"
}

cap_stop() {
	kill "$(cat "$run/tcpdump.pid")" 2>/dev/null || true
	gone "$(cat "$run/tcpdump.pid")"
}

# wire KIND — "time source" of each packet of KIND in the capture: leader
# (TOOL's: VRRP adverts or cm-elect LAs), claim (cm-elect LCs).
wire() {
	local f
	case "$1.$TOOL" in
	leader.ka) f='ip proto 112' ;;
	leader.cm) f='udp port 7701 and udp[13] = 1' ;;
	claim.*) f='udp port 7701 and udp[13] = 2' ;;
	esac
	{ tcpdump -r "$CAP" -tt -n "$f" 2>/dev/null || true; } |
		awk '{ s = $3; n = split(s, p, "."); if (n == 5) s = p[1] "." p[2] "." p[3] "." p[4]; print $1, s }'
}

# host_of IP — the host number of a lab address.
host_of() { echo $((${1##*.} - 10)); }

# ------------------------------------------------------------ keepalived

# Events of both tools go to one log, one line each: "time host what detail".
# keepalived: "t nI state MASTER|BACKUP|FAULT|DEAD".
ka_setup() {
	cat >"$run/notify.sh" <<EOF
#!/bin/sh
# notify.sh HOST: keepalived appends "INSTANCE NAME STATE PRIO"
printf '%s %s state %s\n' "\$(date +%s.%N)" "\$1" "\$4" >>$run/ka.events
EOF
	chmod 755 "$run/notify.sh"
}

ka_start() { # I T
	local i=$1 t=$2
	cat >"$run/k$i.conf" <<EOF
global_defs {
    router_id n$i
    enable_script_security
    script_user root
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 1
}
vrrp_instance EL {
    state BACKUP
    interface eth0
    virtual_router_id 77
    version 3
    priority $(prio "$i")
    advert_int $t
    notify "$run/notify.sh n$i" root
    virtual_ipaddress {
        10.77.1.200/24 dev eth0
    }
}
EOF
	rm -f "$run/k$i.pid" "$run/k$i.vrrp.pid" "$run/k$i.check.pid"
	lab_bg "$i" "$run/k$i.log" keepalived -P -n -l -D -G -f "$run/k$i.conf" \
		-p "$run/k$i.pid" -r "$run/k$i.vrrp.pid" -c "$run/k$i.check.pid" >"$run/k$i.bg"
	wait_for 5 test -s "$run/k$i.vrrp.pid" || die "keepalived on host $i did not start: $(tail -n 5 "$run/k$i.log")"
}

# ka_kill I — a crash of the VRRP child: stop the parent (so it neither
# respawns the child nor, by dying, makes it resign), kill the child, then
# the parent. Sets T_KILL, the time just before the child's SIGKILL.
ka_kill() {
	local i=$1 p c
	p=$(cat "$run/k$i.pid")
	c=$(cat "$run/k$i.vrrp.pid")
	kill -STOP "$p"
	T_KILL=$(t_now)
	kill -KILL "$c"
	kill -KILL "$p"
	gone "$(cat "$run/k$i.bg")"
	printf '%s n%s state DEAD\n' "$(t_now)" "$i" >>"$run/ka.events"
}

ka_stop() { # I — cleanly
	local i=$1 p
	p=$(cat "$run/k$i.pid" 2>/dev/null) || return 0
	kill -TERM "$p" 2>/dev/null || true
	gone "$(cat "$run/k$i.bg")"
	printf '%s n%s state DEAD\n' "$(t_now)" "$i" >>"$run/ka.events"
}

# ka_masters — hosts whose last state is MASTER, sorted. By time, not by
# line: keepalived runs notify scripts concurrently, so a host's MASTER and
# BACKUP lines can land in the log out of order (keepalived#996).
ka_masters() {
	sort -g "$run/ka.events" | awk '$3 == "state" { st[$2] = $4 } END { for (h in st) if (st[h] == "MASTER") print h }' | sort | tr '\n' ' ' | sed 's/ $//'
}

# ------------------------------------------------------------ cm-elect

cm_setup() {
	cat >"$run/hook.sh" <<EOF
#!/bin/sh
printf '%s %s %s %s\n' "\$(date +%s.%N)" "\$CM_ID" "\$CM_EVENT" "\${CM_DETAIL:--}" >>$run/cm.events
EOF
	chmod 755 "$run/hook.sh"
}

cm_start() { # I T [options]
	local i=$1 t=$2
	shift 2
	rm -f "$sd/c$i.json"
	lab_bg "$i" "$run/c$i.log" "$elect" run -v --interface "$(lab_ip "$i")" --id "n$i" \
		--priority "$(prio "$i")" --interval "$t" --state-file "$sd/c$i.json" \
		--on-change "$run/hook.sh" "$@" >"$run/c$i.bg"
}

cm_kill() { # I — sets T_KILL
	local pid
	pid=$(cat "$run/c$1.bg")
	T_KILL=$(t_now)
	kill -KILL "$pid"
	gone "$pid"
	rm -f "$sd/c$1.json"
}

cm_stop() { # I — cleanly
	local pid
	pid=$(cat "$run/c$1.bg" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || true
	gone "$pid"
}

# cm_agree HOST FILES... — HOST leads by its own state file, and every file
# names it as the leader.
cm_agree() {
	python3 - "$@" <<'EOF' 2>/dev/null
import json, sys
want, files = sys.argv[1], sys.argv[2:]
for f in files:
    j = json.load(open(f))
    if not j["leader"] or j["leader"]["id"] != want:
        sys.exit(1)
    if j["id"] == want and j["state"] != "leader":
        sys.exit(1)
EOF
}

# cm_leader FILES... — the leader all the files name, or nothing.
cm_leader() {
	python3 - "$@" <<'EOF' 2>/dev/null || true
import json, sys
ids = set()
for f in sys.argv[1:]:
    j = json.load(open(f))
    ids.add(j["leader"]["id"] if j["leader"] else "-")
if len(ids) == 1:
    print(ids.pop())
EOF
}

# ------------------------------------------------------------ both tools

# Both clusters run on the same five hosts at once (VRRP and cm-elect's UDP
# channel do not meet); trials alternate between them, so both see the same
# machine. TOOL (ka or cm) says which one a helper is about.
TOOL=

tool_name() { if [ "$1" = ka ]; then echo keepalived; else echo cm-elect; fi; }
events() { printf '%s' "$run/$TOOL.events"; }
leader_state() { if [ "$TOOL" = ka ]; then echo MASTER; else echo leader; fi; }

start_host() { if [ "$TOOL" = ka ]; then ka_start "$1" "$2"; else cm_start "$1" "$2"; fi; }
kill_host() { if [ "$TOOL" = ka ]; then ka_kill "$1"; else cm_kill "$1"; fi; }
stop_host() { if [ "$TOOL" = ka ]; then ka_stop "$1"; else cm_stop "$1"; fi; }

# agree HOST HOSTS... — HOST is the one leader and every listed host knows.
agree() {
	local want=$1 h files=()
	shift
	if [ "$TOOL" = ka ]; then
		[ "$(ka_masters)" = "n$want" ]
	else
		for h in "$@"; do files+=("$sd/c$h.json"); done
		cm_agree "n$want" "${files[@]}"
	fi
}

# leader_now HOSTS... — the host number everyone names as leader, or "".
leader_now() {
	local h files=() l
	if [ "$TOOL" = ka ]; then
		l=$(ka_masters)
		case "$l" in n[0-9] | n[0-9][0-9]) echo "${l#n}" ;; esac
	else
		for h in "$@"; do files+=("$sd/c$h.json"); done
		l=$(cm_leader "${files[@]}")
		case "$l" in n[0-9]*) echo "${l#n}" ;; esac
	fi
}

has_leader() { [ -n "$(leader_now "$@")" ]; }

# hook_leaders FROM [TO] — "time host" of every transition to leader
# (MASTER) logged by TOOL's hooks in (FROM, TO].
hook_leaders() {
	awk -v a="$1" -v b="${2:-1e12}" -v s="$(leader_state)" '$1 > a && $1 <= b && $3 == "state" && $4 == s { print $1, $2 }' "$(events)"
}

# some_new_leader T0 OLD — a hook says some host other than OLD leads.
some_new_leader() { hook_leaders "$1" | awk -v o="n$2" '$2 != o { f = 1 } END { exit !f }'; }

all_hosts() { seq 1 "$N" | tr '\n' ' '; }
others() { seq 1 "$N" | grep -vx "$1" | tr '\n' ' '; }

# Results per tool: space-separated lists and counters in R[TOOL.KEY].
declare -A R=()
radd() { R[$TOOL.$1]="${R[$TOOL.$1]:-} $2"; }
rinc() { R[$TOOL.$1]=$((${R[$TOOL.$1]:-0} + ${2:-1})); }

# ------------------------------------------------------------ 1. failover

# trial T — kill TOOL's leader (host 1), time the failover, bring host 1
# back and wait until every host follows it again.
trial() {
	local t=$1 t0 lim settle newl ip first last hook claimers i name
	name=$(tool_name "$TOOL")
	lim=$(ceil_s "$(awk -v t="$t" 'BEGIN { print 6 * t + 5 }')")
	settle=$(fmax 1.5 "$(fmul 4 "$t")")
	phase_sleep "$t"
	kill_host 1
	t0=$T_KILL
	if ! wait_for "$lim" some_new_leader "$t0" 1; then
		rinc failed
		note "  $name: no new leader within $lim s"
	else
		sleep "$settle"
		# shellcheck disable=SC2046
		wait_for "$lim" has_leader $(others 1) || true
		# shellcheck disable=SC2046
		newl=$(leader_now $(others 1))
		if [ -z "$newl" ]; then
			rinc failed
			note "  $name: the survivors do not agree on a leader"
		else
			ip=$(lab_ip "$newl")
			first=$(wire leader | awk -v t0="$t0" -v ip="$ip" '$1 > t0 && $2 == ip && f == "" { f = $1 } END { print f }')
			hook=$(hook_leaders "$t0" | awk -v h="n$newl" '$2 == h && f == "" { f = $1 } END { print f }')
			# hosts other than the old leader that sent a leader message
			claimers=$(wire leader | awk -v t0="$t0" -v old="$(lab_ip 1)" '$1 > t0 && $2 != old { print $2 }' | sort -u | wc -l)
			if [ -z "$first" ]; then
				rinc failed
				note "  $name: no leader message from n$newl on the wire"
			else
				last=$(wire leader | awk -v f="$first" -v ip="$(lab_ip 1)" '$1 < f && $2 == ip { l = $1 } END { print l }')
				radd wire "$(fsub "$first" "$t0")"
				[ -n "$last" ] && radd gap "$(fsub "$first" "$last")"
				[ -n "$hook" ] && radd hook "$(fsub "$hook" "$t0")"
				radd new "n$newl"
				rinc extra $((claimers - 1))
				note "  $name: kill -> n$newl: wire $(fsub "$first" "$t0") s, hook $([ -n "$hook" ] && fsub "$hook" "$t0") s, gap $([ -n "$last" ] && fsub "$first" "$last") s, hosts leading $claimers"
			fi
		fi
	fi
	# Host 1 comes back and, with preemption, takes the lead back.
	start_host 1 "$t"
	# shellcheck disable=SC2046
	if ! wait_for "$((lim + 10))" agree 1 $(all_hosts); then
		note "  $name: n1 did not take the lead back (leader: $(leader_now $(all_hosts))); restarting every host"
		rinc restarts
		for i in $(seq 1 "$N"); do stop_host "$i"; done
		for i in $(seq 1 "$N"); do start_host "$i" "$t"; done
		# shellcheck disable=SC2046
		wait_for 30 agree 1 $(all_hosts) || die "$name: n1 did not win the election after a restart (leader: $(leader_now $(all_hosts)))"
	fi
	sleep "$settle"
}

# fo_line T — the failover result line of TOOL at interval T.
fo_line() {
	local t=$1 name w med=n/a hmed=- gmed=- news
	name=$(tool_name "$TOOL")
	# shellcheck disable=SC2206
	w=(${R[$TOOL.wire]:-})
	if [ "${#w[@]}" -gt 0 ]; then
		med=$(median "${w[@]}")
		# shellcheck disable=SC2086
		[ -n "${R[$TOOL.hook]:-}" ] && hmed=$(median ${R[$TOOL.hook]})
		# shellcheck disable=SC2086
		[ -n "${R[$TOOL.gap]:-}" ] && gmed=$(median ${R[$TOOL.gap]})
		# shellcheck disable=SC2086
		news=$(printf '%s\n' ${R[$TOOL.new]} | sort | uniq -c | awk '{ printf "%s%s*%s", s, $2, $1; s = "," }')
		say "$(printf '%-11s %8s %3d %9.3f %7.3f %7.3f %7.3f %10s %10s %5d %6d %s' "$name" "$t" "${#w[@]}" \
			"$med" "$(percentile 95 "${w[@]}")" "$(percentile 0 "${w[@]}")" "$(percentile 100 "${w[@]}")" \
			"$hmed" "$gmed" "${R[$TOOL.extra]:-0}" "${R[$TOOL.failed]:-0}" "$news")"
	else
		say "$(printf '%-11s %8s %3d   (no trial measured; %d failed)' "$name" "$t" 0 "${R[$TOOL.failed]:-0}")"
	fi
	[ "${R[$TOOL.restarts]:-0}" -eq 0 ] ||
		say "$name $t: ${R[$TOOL.restarts]} times the killed host did not take the lead back; every host was restarted"
	FO_MEDIAN[$TOOL.$t]=$med
}

# phase T — both clusters on the five hosts: failover trials (alternating),
# then the loss window (both at once).
phase() {
	local t=$1 i k tool order
	for tool in ka cm; do : >"$run/$tool.events"; done
	cap_start "$run/cap.$t.pcap"
	note "interval $t s: starting keepalived and cm-elect on $N hosts"
	LOAD[$t]="$(cut -d' ' -f1 /proc/loadavg)"
	for tool in ka cm; do
		TOOL=$tool
		for i in $(seq 1 "$N"); do start_host "$i" "$t"; done
	done
	for tool in ka cm; do
		TOOL=$tool
		# shellcheck disable=SC2046
		wait_for 30 agree 1 $(all_hosts) || die "$(tool_name "$TOOL"): n1 did not win the first election (leader: $(leader_now $(all_hosts)))"
	done
	sleep 2
	R=()
	for k in $(seq 1 "$TRIALS"); do
		order="ka cm"
		[ $((k % 2)) -eq 0 ] && order="cm ka"
		for tool in $order; do
			TOOL=$tool
			note "interval $t s: trial $k/$TRIALS, $(tool_name "$TOOL")"
			trial "$t"
		done
	done
	LOAD[$t]="${LOAD[$t]}..$(cut -d' ' -f1 /proc/loadavg)"
	for tool in ka cm; do
		TOOL=$tool
		fo_line "$t"
	done
	loss_window "$t"
	for tool in ka cm; do
		TOOL=$tool
		for i in $(seq 1 "$N"); do stop_host "$i"; done
	done
	cap_stop
}

# ------------------------------------------------------------ 2. loss

loss_window() {
	local t=$1 a b i tool trans demoted lost foreign claims
	local -A drops=([ka]=0 [cm]=0)
	for tool in ka cm; do
		TOOL=$tool
		# shellcheck disable=SC2046
		agree 1 $(all_hosts) || die "$(tool_name "$TOOL"): no stable leader before the loss window"
	done
	note "interval $t s: $LOSS_PCT% loss for $LOSS_SECS s"
	for i in $(seq 1 "$N"); do loss_on "$i" "$LOSS_PCT"; done
	a=$(t_now)
	sleep "$LOSS_SECS"
	b=$(t_now)
	for i in $(seq 1 "$N"); do
		drops[cm]=$((drops[cm] + $(loss_dropped "$i" udp)))
		drops[ka]=$((drops[ka] + $(loss_dropped "$i" vrrp)))
		loss_off "$i"
	done
	for tool in ka cm; do
		TOOL=$tool
		# transitions to leader by any host in the window (n1 already leads)
		trans=$(hook_leaders "$a" "$b" | wc -l)
		# the leader leaving the leader state
		demoted=$(awk -v a="$a" -v b="$b" -v s="$(leader_state)" '$1 > a && $1 <= b && $2 == "n1" && $3 == "state" && $4 != s' "$(events)" | wc -l)
		# cm-elect only: members that lost the leader (their dead timer fired)
		lost=-
		[ "$TOOL" = cm ] && lost=$(awk -v a="$a" -v b="$b" '$1 > a && $1 <= b && $3 == "leader" && $4 == "-"' "$(events)" | wc -l)
		# leader messages on the wire from anyone but n1, and cm-elect's claims
		foreign=$(wire leader | awk -v a="$a" -v b="$b" -v old="$(lab_ip 1)" '$1 > a && $1 <= b && $2 != old' | wc -l)
		claims=-
		[ "$TOOL" = cm ] && claims=$(wire claim | awk -v a="$a" -v b="$b" '$1 > a && $1 <= b' | wc -l)
		LOSS_LINES+=("$(printf '%-11s %8s %11d %8d %10s %9d %7s %8d' "$(tool_name "$TOOL")" "$t" "$trans" "$demoted" "$lost" "$foreign" "$claims" "${drops[$TOOL]}")")
		LOSS_TRANS[$TOOL.$t]=$trans
		note "$(tool_name "$TOOL"), interval $t s: $trans transitions to leader, ${drops[$TOOL]} packets dropped"
	done
	sleep 1
	for tool in ka cm; do
		TOOL=$tool
		# shellcheck disable=SC2046
		wait_for 10 agree 1 $(all_hosts) || note "$(tool_name "$TOOL"): after the loss window the leader is $(leader_now $(all_hosts))"
	done
}

# ------------------------------------------------------------ 3. registration

# big_run MODE — BIG hosts run cm-elect --interval 1; prints seconds from
# the start until the leader lists BIG members and every host is registered
# (MODE cold: all start together; warm: host 1, the best, leads first).
big_run() {
	local mode=$1 i t0 first=2 out
	for i in $(seq 1 "$BIG"); do rm -f "$sd/b$i.json"; done
	if [ "$mode" = warm ]; then
		lab_bg 1 "$run/b1.log" "$elect" run --interface "$(lab_ip 1)" --id n1 --priority 1000 \
			--interval 1 --state-file "$sd/b1.json" >"$run/b1.bg"
		wait_for 15 sh -c "grep -q '\"state\": \"leader\"' '$sd/b1.json' 2>/dev/null" || die "warm: host 1 did not lead"
	else
		first=1
	fi
	t0=$(t_now)
	for i in $(seq "$first" "$BIG"); do
		lab_bg "$i" "$run/b$i.log" "$elect" run --interface "$(lab_ip "$i")" --id "n$i" \
			--priority $((1000 - i)) --interval 1 --state-file "$sd/b$i.json" >"$run/b$i.bg"
	done
	note "  $((BIG - first + 1)) started in $(fsub "$(t_now)" "$t0") s"
	# One watcher polls the state files (every 20 ms) and prints the times
	# (from t0) of: a leader, the leader listing BIG, every host registered.
	out=$(python3 - "$t0" "$BIG" "$sd" <<'EOF'
import json, os, sys, time
t0, n, d = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = [f"{d}/b{i}.json" for i in range(1, n + 1)]
cache, seen = {}, {}
t_lead = t_full = None
while time.time() - t0 < 30:
    for f in files:
        try:
            st = os.stat(f)
            if cache.get(f, (None,))[0] != st.st_mtime_ns:
                cache[f] = (st.st_mtime_ns, json.load(open(f)))
        except (OSError, ValueError):
            pass
    now = time.time() - t0
    states = {f: c[1] for f, c in cache.items()}
    leaders = [j for j in states.values() if j["state"] == "leader"]
    if leaders and t_lead is None:
        t_lead = now
    if len(leaders) == 1 and len(leaders[0]["members"]) == n and t_full is None:
        t_full = now
    if (t_full is not None and len(leaders) == 1 and len(states) == n and
            len(leaders[0]["members"]) == n and
            all(j["registered"] and j["leader"] and j["leader"]["id"] == leaders[0]["id"] for j in states.values())):
        print(f"{now:.3f} {t_lead:.3f} {t_full:.3f} {leaders[0]['id']}")
        sys.exit(0)
    time.sleep(0.02)
reg = sum(1 for j in states.values() if j["registered"])
print(f"timeout {t_lead} {t_full} leaders={len(leaders)} members={len(leaders[0]['members']) if leaders else 0} registered={reg}/{len(states)}")
EOF
)
	for i in $(seq 1 "$BIG"); do kill -KILL "$(cat "$run/b$i.bg")" 2>/dev/null || true; done
	for i in $(seq 1 "$BIG"); do gone "$(cat "$run/b$i.bg")"; done
	printf '%s' "$out"
}

big() {
	local mode r out all lead full a b c
	note "registration: building a lab of $BIG hosts"
	lab_down
	LAB_PREFIX=
	lab_up ebb "$BIG" || die "cannot build a lab of $BIG hosts"
	say "registration of $BIG hosts (cm-elect --interval 1; seconds from starting them; cold: all start together; warm: the leader runs first and $((BIG - 1)) join), median of $BIG_RUNS"
	say "$(printf '%-5s %4s %10s %12s %12s   %s' mode n 'leader s' 'lists all s' 'all reg s' runs)"
	for mode in cold warm; do
		all=() lead=() full=()
		for r in $(seq 1 "$BIG_RUNS"); do
			out=$(big_run "$mode")
			note "  $mode run $r: $out"
			case "$out" in
			timeout*)
				say "cm-elect registration of $BIG, $mode, run $r: not complete after 30 s ($out)"
				continue
				;;
			esac
			read -r a b c _ <<<"$out"
			[ "$mode" = warm ] && b=-  # it led before the clock started
			all+=("$a") lead+=("$b") full+=("$c")
			sleep 2
		done
		if [ "${#all[@]}" -gt 0 ]; then
			BIG_MED[$mode]=$(median "${all[@]}")
			b=-
			[ "$mode" = cold ] && b=$(median "${lead[@]}")
			say "$(printf '%-5s %4d %10s %12s %12s   %s' "$mode" "${#all[@]}" "$b" "$(median "${full[@]}")" \
				"${BIG_MED[$mode]}" "$(printf '%s ' "${all[@]}")")"
		else
			BIG_MED[$mode]=n/a
		fi
	done
}

# ------------------------------------------------------------ main

declare -A FO_MEDIAN=() LOSS_TRANS=() BIG_MED=() LOAD=()
LOSS_LINES=()

lab_up ebe "$N" || die "cannot build the lab"
ka_setup
cm_setup
say "== bench/elect.sh: $("$elect" --version), $(keepalived --version 2>&1 | head -n 1) (VRRPv3), tcpdump $(tcpdump --version 2>&1 | awk 'NR == 1 { print $3 }'); $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg) at start; lab of $N namespaces on a bridge (tests/lab/lab.bash); cm-elect state files on $(stat -f -c %T "$sd")"

case " $PHASES " in
*" failover "*)
	say "failover after kill -9 of the leader (keepalived: its VRRP child), $TRIALS trials per row; priorities 150..110, preemption on (the killed host returns and takes the lead back between trials); both clusters run on the same hosts at once, trials alternate"
	say "time from the kill to the new leader's first leader message (VRRP advert / LA) on the wire, tcpdump in host 5; hook = the notify / --on-change timestamp of its transition"
	say "$(printf '%-11s %8s %3s %9s %7s %7s %7s %10s %10s %5s %6s %s' tool interval n 'median s' 'p95 s' 'min s' 'max s' 'hook med s' 'gap med s' extra failed 'new leader')"
	for t in $INTERVALS; do phase "$t"; done
	for t in $INTERVALS; do
		r=$(ratio "${FO_MEDIAN[cm.$t]}" "${FO_MEDIAN[ka.$t]}")
		say "$(printf 'ratio cm/keepalived failover median at %-4s s = %s (target <= 1.0: %s)' "$t" "$r" "$(verdict "$r" 1.0)")"
	done
	for t in $INTERVALS; do say "load average (1 min) at the start and the end of the $t s trials: ${LOAD[$t]}"; done
	say "(gap: from the old leader's last leader message to the new one's first, independent of when in the cycle the kill landed; extra: hosts other than the new leader that also sent leader messages after the kill, summed over the trials; failed: trials without a measured failover)"
	say "leader changes in $LOSS_SECS s with $LOSS_PCT% loss: every host drops $LOSS_PCT% of the control packets it receives (nftables on input, UDP and VRRP); both clusters at once; n1 leads before the window"
	say "$(printf '%-11s %8s %11s %8s %10s %9s %7s %8s' tool interval 'to leader' demoted lost-lead 'wire LA' claims dropped)"
	for l in "${LOSS_LINES[@]}"; do say "$l"; done
	for t in $INTERVALS; do
		v=$([ "${LOSS_TRANS[cm.$t]}" -eq 0 ] && echo met || echo missed)
		say "$(printf 'cm-elect leader changes at %-4s s with %s%% loss = %s (keepalived: %s; target 0: %s)' "$t" "$LOSS_PCT" "${LOSS_TRANS[cm.$t]}" "${LOSS_TRANS[ka.$t]}" "$v")"
	done
	say "(to leader: transitions to MASTER / leader by the hooks; demoted: n1 leaving it; lost-lead: cm-elect members whose dead timer fired; wire LA: leader messages from hosts other than n1; claims: cm-elect LCs; dropped: the tool's packets the rules dropped)"
	;;
esac

case " $PHASES " in
*" big "*)
	big
	say "cm-elect registration of $BIG members, cold = ${BIG_MED[cold]} s (target <= 5: $(verdict "${BIG_MED[cold]}" 5))"
	say "cm-elect registration of $BIG members, warm = ${BIG_MED[warm]} s (target <= 5: $(verdict "${BIG_MED[warm]}" 5))"
	say "keepalived registration: n/a (VRRP has no membership)"
	;;
esac
