# The namespace lab: hosts built from Linux network namespaces, joined by a
# bridge that lives in a namespace of its own (so the host's firewall never
# sees lab traffic), with real IP multicast between them. Used by the lab
# tests and by bench/. Needs root (CI runs as root).
#
#   lab_up NAME N          hosts 1..N on one segment, 10.77.S.(10+i)/24
#   lab_segment NAME S N   another segment (its own bridge), hosts S.1..S.N
#   lab_exec I CMD...      run CMD in host I (I is "1" or "S.I")
#   lab_bg I LOG CMD...    the same, in the background; prints the pid
#   lab_ip I               host I's address
#   lab_loss I PCT         drop PCT% of the UDP packets host I receives
#   lab_loss_off I
#   lab_rate I RATE        cap host I's sending rate (tbf), e.g. 200mbit
#   lab_down               kill everything started in the lab, delete it
#
# Names are unique per run (LAB_PREFIX), so labs of concurrent tests never
# meet; lab_down deletes only what lab_up made, by name.

LAB_PREFIX=${LAB_PREFIX:-}
LAB_HOSTS=()

lab_need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "the namespace lab needs root (CI runs as root)" >&2
		return 1
	fi
	command -v ip >/dev/null && command -v nft >/dev/null && command -v tc >/dev/null || {
		echo "the namespace lab needs iproute2 and nftables (scripts/deps.sh test)" >&2
		return 1
	}
}

_lab_ns() { # host spec -> namespace name
	local spec=$1
	case "$spec" in
	*.*) echo "${LAB_PREFIX}-h${spec/./-}" ;;
	*) echo "${LAB_PREFIX}-h1-$spec" ;;
	esac
}

lab_segment() { # NAME SEG N
	local name=$1 seg=$2 n=$3 i ns sw
	[ -n "$LAB_PREFIX" ] || LAB_PREFIX="$name$$"
	sw="${LAB_PREFIX}-sw$seg"
	ip netns add "$sw" || return 1
	ip netns exec "$sw" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip -n "$sw" link add br0 type bridge || return 1
	ip -n "$sw" link set br0 up
	ip -n "$sw" link set lo up
	LAB_HOSTS+=("$sw")
	for i in $(seq 1 "$n"); do
		ns=$(_lab_ns "$seg.$i")
		ip netns add "$ns" || return 1
		LAB_HOSTS+=("$ns")
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
		ip link add "v$i" netns "$sw" type veth peer name eth0 netns "$ns" || return 1
		ip -n "$sw" link set "v$i" master br0 up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "10.77.$seg.$((10 + i))/24" brd + dev eth0
		ip -n "$ns" link set eth0 up
		# No default route in a namespace: multicast needs a route (and
		# IP_MULTICAST_IF on every sending socket).
		ip -n "$ns" route add 224.0.0.0/4 dev eth0
	done
}

lab_up() { # NAME N
	lab_need_root || return 1
	lab_segment "$1" 1 "$2"
}

lab_ip() { # I
	local spec=$1
	case "$spec" in
	*.*) echo "10.77.${spec%%.*}.$((10 + ${spec#*.}))" ;;
	*) echo "10.77.1.$((10 + spec))" ;;
	esac
}

lab_exec() { # I CMD...
	local ns
	ns=$(_lab_ns "$1")
	shift
	ip netns exec "$ns" "$@"
}

lab_bg() { # I LOG CMD...
	local ns log
	ns=$(_lab_ns "$1")
	log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 &
	echo $!
	# lab_down kills it: no job notice from this shell.
	disown $! 2>/dev/null || true
}

lab_loss() { # I PCT
	local ns
	ns=$(_lab_ns "$1")
	ip netns exec "$ns" nft -f - <<EOF
table inet lab
delete table inet lab
table inet lab {
	chain in {
		type filter hook input priority 0;
		meta l4proto udp numgen random mod 100 < $2 counter drop
	}
}
EOF
}

lab_loss_off() { # I
	ip netns exec "$(_lab_ns "$1")" nft delete table inet lab 2>/dev/null || true
}

lab_rate() { # I RATE
	ip netns exec "$(_lab_ns "$1")" tc qdisc replace dev eth0 root tbf rate "$2" burst 64kb latency 50ms
}

lab_down() {
	local ns pid
	for ns in "${LAB_HOSTS[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null
		done
	done
	for ns in "${LAB_HOSTS[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	LAB_HOSTS=()
	return 0
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fails
# after SECONDS (every loop in a lab is bounded).
wait_for() {
	local limit=$1 i
	shift
	for i in $(seq 1 $((limit * 10))); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
