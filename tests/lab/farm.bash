# shellcheck shell=bash
# farm.bash — the whole system on one machine: a manager and FARM_SITES
# sites of FARM_SERVERS servers, every daemon started as a sysadmin would:
# cm-elect, cm-push agent and cm-mcast recv on each server; cm-push serve
# and cm-sched, ticked every few seconds like cron, on the manager; keys and
# certificates made for the farm.
#
# Two modes. "ns" (root; the tests and CI): every host is a network
# namespace; the manager sits on a WAN bridge, each site on its own bridge
# behind a router namespace, with IP multicast inside the site; each site's
# WAN link and the manager's uplink are capped with tbf. "loopback"
# (FARM_MODE=loopback, or not root: make demo): the same daemons as plain
# processes on 127.77.x.y addresses.
#
#   farm_up DIR              build and start it all; files under DIR
#   farm_down                stop and delete it all (also on failure)
#   farm_exec HOST CMD...    run on HOST: "m" (the manager) or a server id
#   farm_sched ARGS...       cm-sched on the manager, with the farm's database
#   farm_ids                 every server id (east1 ... north4)
#   farm_root ID             that server's site directory (live/ inside)
#   farm_leader SEGMENT      the id of the site's elected leader
#   farm_kill ID             the server dies: its daemons are killed -9
#   farm_start_server ID     (re)start its daemons
#   farm_wan_down SEGMENT    cut that site's WAN link; farm_wan_up brings it back
#   farm_manager_tx          bytes the manager has sent on its uplink
#
# Source lab.bash first in ns mode (LAB_PREFIX names everything).

FARM_SITES=${FARM_SITES:-3}
FARM_SERVERS=${FARM_SERVERS:-4}
FARM_WAN_RATE=${FARM_WAN_RATE:-100mbit}
FARM_MANAGER_RATE=${FARM_MANAGER_RATE:-200mbit}
FARM_TICK=${FARM_TICK:-2}
FARM_DELIVER_EARLY=${FARM_DELIVER_EARLY:-1}
FARM_SERVE_OPTIONS=${FARM_SERVE_OPTIONS:-} # more words for cm-push serve (--star 0 ...)
# How long a leader waits for its members to apply and report (cm-mcast
# send --report-timeout): the lab runs every server on the same few cores.
FARM_REPORT_TIMEOUT=${FARM_REPORT_TIMEOUT:-20}
FARM_NAMES=(east west north south central)
FARM_PIDS=()

_farm_seg() { echo "${FARM_NAMES[$(($1 - 1))]}"; } # site number -> segment name

_farm_site_of() { # id -> site number
	local s
	for s in $(seq 1 "$FARM_SITES"); do
		case "$1" in "$(_farm_seg "$s")"*) echo "$s" && return 0 ;; esac
	done
	return 1
}

_farm_ip() { # "m" or an id -> address
	local s i
	if [ "$1" = m ]; then
		[ "$FARM_MODE" = ns ] && echo 10.77.1.11 || echo 127.77.0.1
		return
	fi
	s=$(_farm_site_of "$1")
	i=${1#"$(_farm_seg "$s")"}
	[ "$FARM_MODE" = ns ] && echo "10.77.$((s + 1)).$((10 + i))" || echo "127.77.$s.$((10 + i))"
}

_farm_host() { # "m" or an id -> lab host spec
	local s
	[ "$1" = m ] && echo 1.1 && return
	s=$(_farm_site_of "$1")
	echo "$((s + 1)).${1#"$(_farm_seg "$s")"}"
}

farm_exec() {
	local h=$1
	shift
	if [ "$FARM_MODE" = ns ]; then lab_exec "$(_farm_host "$h")" "$@"; else "$@"; fi
}

_farm_bg() { # HOST LOG CMD...: prints the pid
	local h=$1 log=$2
	shift 2
	if [ "$FARM_MODE" = ns ]; then
		lab_bg "$(_farm_host "$h")" "$log" "$@"
	else
		"$@" >"$log" 2>&1 &
		echo $!
		disown $! 2>/dev/null || true
	fi
}

farm_ids() {
	local s i
	for s in $(seq 1 "$FARM_SITES"); do
		for i in $(seq 1 "$FARM_SERVERS"); do echo "$(_farm_seg "$s")$i"; done
	done
}

farm_root() { echo "$FARM_DIR/srv/$1/site"; }

farm_sched() { farm_exec m cm-sched "$1" --db "$FARM_DIR/cm.db" "${@:2}"; }

_farm_wait_port() { # HOST PORT
	local ip
	ip=$(_farm_ip "$1")
	wait_for 20 farm_exec "$1" bash -c "exec 3<>/dev/tcp/$ip/$2" 2>/dev/null
}

_farm_net() {
	local s sw r
	lab_segment farm 1 1 # the WAN: the manager
	for s in $(seq 1 "$FARM_SITES"); do
		lab_segment farm $((s + 1)) "$FARM_SERVERS" || return 1
	done
	# A router per site: one leg on the WAN, one on the site's bridge.
	for s in $(seq 1 "$FARM_SITES"); do
		r="${LAB_PREFIX}-r$s"
		ip netns add "$r" || return 1
		LAB_HOSTS+=("$r")
		ip netns exec "$r" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv4.ip_forward=1
		ip -n "$r" link set lo up
		ip link add "w$s" netns "${LAB_PREFIX}-sw1" type veth peer name wan netns "$r" || return 1
		ip -n "${LAB_PREFIX}-sw1" link set "w$s" master br0 up
		ip -n "$r" addr add "10.77.1.$((100 + s))/24" dev wan
		ip -n "$r" link set wan up
		sw="${LAB_PREFIX}-sw$((s + 1))"
		ip link add r netns "$sw" type veth peer name lan netns "$r" || return 1
		ip -n "$sw" link set r master br0 up
		ip -n "$r" addr add "10.77.$((s + 1)).1/24" dev lan
		ip -n "$r" link set lan up
		# The site's WAN link, both ways.
		ip netns exec "$r" tc qdisc replace dev wan root tbf rate "$FARM_WAN_RATE" burst 64kb latency 100ms
		ip netns exec "$r" tc qdisc replace dev lan root tbf rate "$FARM_WAN_RATE" burst 64kb latency 100ms
	done
	# Routes: servers go through their router; the WAN knows every site.
	for s in $(seq 1 "$FARM_SITES"); do
		for i in $(seq 1 "$FARM_SERVERS"); do
			lab_exec "$((s + 1)).$i" ip route add default via "10.77.$((s + 1)).1"
		done
		lab_exec 1.1 ip route add "10.77.$((s + 1)).0/24" via "10.77.1.$((100 + s))"
		for t in $(seq 1 "$FARM_SITES"); do
			[ "$t" = "$s" ] && continue
			ip -n "${LAB_PREFIX}-r$s" route add "10.77.$((t + 1)).0/24" via "10.77.1.$((100 + t))"
		done
	done
	lab_rate 1.1 "$FARM_MANAGER_RATE"
}

farm_start_server() {
	local id=$1 s seg ip d m pub
	s=$(_farm_site_of "$id")
	seg=$(_farm_seg "$s")
	ip=$(_farm_ip "$id")
	m=$(_farm_ip m)
	d="$FARM_DIR/srv/$id"
	pub="$FARM_DIR/keys/site.pub"
	mkdir -p "$d/site" "$d/in" "$d/push"
	local ech="239.192.$((70 + s)).1:$((7701 + 10 * s))" mch="239.192.$((70 + s)).2:$((7702 + 10 * s))"
	_farm_bg "$id" "$d/recv.log" cm-mcast recv -v --interface "$ip" --channel "$mch" --dir "$d/in" --id "$id" \
		--exec "cm-apply --json --root '$d/site' --pubkey '$pub' {}" >"$d/recv.pid"
	# Cut-through into the site: the leader multicasts the assignment as
	# it arrives (FARM_DELIVER_EARLY=0: once it has it whole).
	local early=() follow=""
	if [ "$FARM_DELIVER_EARLY" = 1 ]; then
		early=(--deliver-early)
		follow="--follow \"\$CM_PART\" --size \$CM_SIZE --sha256 \$CM_SHA256 --follow-idle 60"
	fi
	_farm_bg "$id" "$d/agent.log" cm-push agent --tls "$FARM_DIR/tls" --name "$id" --listen "$ip:7801" \
		--manager "$m:7800" --dir "$d/push" --idle 5 "${early[@]}" \
		--deliver "cm-mcast send --json --interface $ip --channel $mch --members '$d/elect.json' --report-timeout $FARM_REPORT_TIMEOUT $follow --self-exec 'cm-apply --json --root $d/site --pubkey $pub \"\$CM_FILE\"' {}" \
		>"$d/agent.pid"
	_farm_bg "$id" "$d/elect.log" cm-elect run --interface "$ip" --id "$id" --segment "$seg" --location "$seg" \
		--channel "$ech" --state-file "$d/elect.json" --data-dir "$d" \
		--report-cmd "cm-push report --tls '$FARM_DIR/tls' --name $id --manager $m:7800" >"$d/elect.pid"
	FARM_PIDS+=("$(cat "$d/recv.pid")" "$(cat "$d/agent.pid")" "$(cat "$d/elect.pid")")
}

farm_kill() {
	local d="$FARM_DIR/srv/$1" f
	for f in elect agent recv; do kill -9 "$(cat "$d/$f.pid")" 2>/dev/null || true; done
}

farm_leader() { # SEGMENT: from the manager's registry
	farm_exec m cm-push status --tls "$FARM_DIR/tls" --manager "$(_farm_ip m):7800" 2>/dev/null |
		awk -v seg="$1" '$1 == "leader" && $5 == seg { print $2 }'
}

_farm_ready() { # every site has a leader at the manager, cm-sched knows every server
	local n
	n=$(farm_exec m cm-push status --tls "$FARM_DIR/tls" --manager "$(_farm_ip m):7800" 2>/dev/null | grep -c '^leader ')
	[ "${n:-0}" = "$FARM_SITES" ] || return 1
	n=$(farm_sched server list 2>/dev/null | wc -l)
	[ "$n" = $((FARM_SITES * FARM_SERVERS)) ]
}

farm_up() {
	FARM_DIR=$1
	if [ -z "${FARM_MODE:-}" ]; then
		[ "$(id -u)" = 0 ] && FARM_MODE=ns || FARM_MODE=loopback
	fi
	mkdir -p "$FARM_DIR/keys" "$FARM_DIR/staging"
	if [ "$FARM_MODE" = ns ]; then
		[ -n "${LAB_PREFIX:-}" ] || LAB_PREFIX="fa$$$RANDOM"
		_farm_net || return 1
	fi
	# The farm's keys: assignments signed by the manager, TLS for every host.
	cm-assign keygen --sign -o "$FARM_DIR/keys/site" >/dev/null
	cm-push ca init "$FARM_DIR/tls" --site "cm farm CA"
	# shellcheck disable=SC2046
	cm-push ca issue "$FARM_DIR/tls" manager $(farm_ids)
	local m
	m=$(_farm_ip m)
	# shellcheck disable=SC2086 # FARM_SERVE_OPTIONS is words
	FARM_PIDS+=("$(_farm_bg m "$FARM_DIR/serve.log" cm-push serve --tls "$FARM_DIR/tls" --listen "$m:7800" \
		--state "$FARM_DIR/push" --stall 5 $FARM_SERVE_OPTIONS)")
	_farm_wait_port m 7800 || return 1
	for id in $(farm_ids); do farm_start_server "$id"; done
	farm_sched init 2>/dev/null
	farm_sched config -- push_options "--tls $FARM_DIR/tls --manager $m:7800"
	farm_sched config reachable_seconds 30
	farm_sched site add www --staging "$FARM_DIR/staging" --shadow "$FARM_DIR/shadow"
	farm_sched group add all --segments "$(farm_ids | sed 's/[0-9]*$//' | sort -u | paste -sd,)"
	# cron, every few seconds: the registry's cluster reports into cm-sched, then a tick.
	FARM_PIDS+=("$(_farm_bg m "$FARM_DIR/ticks.log" bash -c "
		while :; do
			cm-push status --json --tls '$FARM_DIR/tls' --manager $m:7800 | cm-sched server import --db '$FARM_DIR/cm.db'
			cm-sched tick -q --db '$FARM_DIR/cm.db'
			sleep $FARM_TICK
		done")")
	wait_for 60 _farm_ready || {
		echo "the farm did not come up: leaders and servers missing" >&2
		return 1
	}
}

farm_down() {
	local p
	if [ "${FARM_MODE:-}" = ns ]; then
		lab_down
	else
		for p in "${FARM_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
		for p in "${FARM_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	fi
	FARM_PIDS=()
}

farm_wan_down() { ip -n "${LAB_PREFIX}-r$(_farm_site_of "${1}1")" link set wan down; }
farm_wan_up() {
	local s
	s=$(_farm_site_of "${1}1")
	ip -n "${LAB_PREFIX}-r$s" link set wan up
	for t in $(seq 1 "$FARM_SITES"); do
		[ "$t" = "$s" ] || ip -n "${LAB_PREFIX}-r$s" route replace "10.77.$((t + 1)).0/24" via "10.77.1.$((100 + t))"
	done
}

farm_manager_tx() { farm_exec m cat /sys/class/net/eth0/statistics/tx_bytes; }
