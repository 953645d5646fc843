#!/usr/bin/env bash
# bench/mcast.sh — cm-mcast side by side with UDPcast and UFTP on the
# namespace lab (tests/lab/lab.bash).
#
# Usage: CM_BIN=/path/to/build bench/mcast.sh        (as root: the lab needs it)
#
# One lab: host 1 sends, hosts 2..5 receive; the sender's egress is capped
# with tbf (lab_rate 1 200mbit: tbf counts each packet as its Ethernet frame
# without FCS, i.e. IP length + 14 bytes); loss is injected on every
# receiver's input with nftables (lab_loss), 0%, 2% and 5%.
#
# 1. 200 MiB random file, per loss rate, RUNS runs of each tool, interleaved:
#      cm-mcast send --rate R --expect 4 (R from CM_RATES) / cm-mcast recv
#      udp-sender --max-bitrate 200m --min-receivers 4 / udp-receiver
#      uftp -R 200000 -Y none -H <the 4 receivers> / uftpd -d
#    The time is from the sender's start to its exit: all three exit only
#    when every receiver has acknowledged the whole file (cm-mcast: after
#    each receiver checked the SHA-256 and reported; UDPcast: after the last
#    slice's acks; UFTP: after every client's COMPLETE). After the run the
#    sha256 of every copy is checked. Wire bytes and packets are the tbf
#    qdisc's "Sent" counters in the sender's namespace (before/after); each
#    receiver's drops are the lab's nft counter, and a counter of our own in
#    front of it (priority -10) counts the UDP packets that reached it, so the
#    loss rate p_i is measured. What the union of the losses forces: with
#    independent loss, a frame is sent until every receiver has it, on
#    average E = sum_k>=0 (1 - prod_i (1 - p_i^k)) times (pass 1 alone:
#    1 + union, union = 1 - prod_i (1 - p_i)); the minimum is the file's
#    bytes x E (payload only: every header byte counts against the tool).
# 2. 1 MiB random file, 0% loss: time from the sender's start to its exit,
#    median of SMALL_RUNS runs per tool.
# 3. The issue's targets, each ratio with met/missed.
# 4. Memory: a 2 GiB file (sparse, cached) to MEM_RECEIVERS receivers; peak
#    RSS of the sender (GNU time) and of each receiver (VmHWM, read from
#    /proc before it is stopped).
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md; progress goes to stderr. Times are wall-clock on a
# shared 2-core machine: printed, never asserted. The exit status says only
# whether the benchmark ran.
#
# Environment: CM_BIN (dir holding cm-mcast; default ../build), RUNS (3),
# SMALL_RUNS (10), LOSSES ("0 2 5"), CM_RATES ("200m 195m"; the first is the
# one the targets use unless CM_TARGET_RATE is set), TOOLS ("cm udpcast
# uftp"; add "cmnosync" for a diagnostic: cm-mcast with its receivers under
# eatmydata, so their fsync(2) costs nothing, as UFTP's receivers never
# fsync), BIG_MIB (200), MEM_MIB (2048), MEM_RECEIVERS (2), TIMEOUT (300 s
# per transfer), MEM_LOSS (0, %), PARTS ("big small mem"), KEEP=1 to keep the run directory,
# CM_SEND_ARGS (more options for cm-mcast send, e.g. "--fec 0").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"
# shellcheck source=tests/lab/lab.bash
. "$here/../tests/lab/lab.bash"

CM_BIN=${CM_BIN:-$here/../build}
cm=$CM_BIN/cm-mcast
RUNS=${RUNS:-3}
SMALL_RUNS=${SMALL_RUNS:-10}
LOSSES=${LOSSES:-0 2 5}
CM_RATES=${CM_RATES:-200m 195m}
CM_TARGET_RATE=${CM_TARGET_RATE:-${CM_RATES%% *}}
TOOLS=${TOOLS:-cm udpcast uftp}
BIG_MIB=${BIG_MIB:-200}
MEM_MIB=${MEM_MIB:-2048}
MEM_RECEIVERS=${MEM_RECEIVERS:-2}
MEM_LOSS=${MEM_LOSS:-0}
TIMEOUT=${TIMEOUT:-300}
PARTS=${PARTS:-big small mem}
KEEP=${KEEP:-0}
CM_SEND_ARGS=${CM_SEND_ARGS:-} # more options for cm-mcast send, e.g. "--fec 0"

LINK=200mbit
LINK_BPS=200000000
NRECV=4
CH=239.192.77.41:7741 # cm-mcast's data channel in this lab

[ -x "$cm" ] || die "$cm not found (build with cmake --build build, or point CM_BIN at the build dir)"
need udp-sender udp-receiver uftp uftpd sha256sum /usr/bin/time tc nft ip awk
[[ " $TOOLS " != *" cmnosync "* ]] || need eatmydata
lab_need_root || die "the lab needs root"

work=$here/work
cache=$work/cache
mkdir -p "$cache"
run=$(mktemp -d "$work/mcast.XXXXXX")
logs=$run/logs
mkdir -p "$logs"
# shellcheck disable=SC2034  # lab.bash names everything after it
LAB_PREFIX="bmc$$"
cleanup() {
	lab_down
	if [ "$KEEP" = 1 ]; then
		note "kept $run"
	else
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'note "failed at line $LINENO"' ERR

# ---------------------------------------------------------------- helpers

recv_hosts() { seq 2 $((1 + ${1:-$NRECV})); } # receivers are hosts 2..N+1

# mcfile NAME MIB — a cached random file of MIB MiB (made once).
mcfile() {
	local f=$cache/mcast-$1.bin
	if [ ! -s "$f" ] || [ ! -s "$f.sha256" ]; then
		note "making $f"
		head -c "$(($2 << 20))" /dev/urandom >"$f.tmp"
		sha256sum <"$f.tmp" | cut -d' ' -f1 >"$f.sha256"
		mv "$f.tmp" "$f"
	fi
	printf '%s' "$f"
}

# tbf_sent — "BYTES PACKETS DROPPED" of the sender's tbf qdisc.
tbf_sent() {
	lab_exec 1 tc -s qdisc show dev eth0 |
		awk '/Sent/ { b = $2; p = $4; d = $7; sub(",", "", d); print b, p, d; exit }'
}

# counters_reset LOSS — loss rule (with its drop counter) and our own
# packet counter in front of it, fresh on every receiver.
counters_reset() {
	local i
	for i in $(recv_hosts); do
		lab_loss "$i" "$1" >/dev/null
		lab_exec "$i" nft -f - <<-EOF
			table inet benchmc
			delete table inet benchmc
			table inet benchmc {
				chain in {
					type filter hook input priority -10;
					meta l4proto udp counter
				}
			}
		EOF
	done
}

# counters_read — "DROPS/IN DROPS/IN ..." per receiver.
counters_read() {
	local i d c out=""
	for i in $(recv_hosts); do
		d=$(lab_exec "$i" nft list table inet lab | awk '/counter packets/ { for (k = 1; k <= NF; k++) if ($k == "packets") print $(k + 1); exit }')
		c=$(lab_exec "$i" nft list table inet benchmc | awk '/counter packets/ { for (k = 1; k <= NF; k++) if ($k == "packets") print $(k + 1); exit }')
		out+="${d:-0}/${c:-0} "
	done
	printf '%s' "${out% }"
}

# loss_model "D/IN ..." — "UNION E": pass 1's union of the losses and the
# expected transmissions per frame until every receiver has it.
loss_model() {
	printf '%s\n' "$1" | tr ' ' '\n' | awk -F/ '
		{ p[NR] = ($2 > 0) ? $1 / $2 : 0 }
		END {
			u = 1; for (i = 1; i <= NR; i++) u *= 1 - p[i]
			e = 0
			for (k = 0; k < 200; k++) {
				q = 1; for (i = 1; i <= NR; i++) q *= 1 - p[i] ^ k
				e += 1 - q
			}
			printf "%.5f %.5f\n", 1 - u, e
		}'
}

# json_num FILE KEY — a top-level number from cm-mcast's --json report.
json_num() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# stop_pids SECONDS PID... — wait up to SECONDS for them to exit, then
# SIGTERM (and SIGKILL a second later) whatever is left.
all_gone() { # PID...
	local p
	for p in "$@"; do
		! kill -0 "$p" 2>/dev/null || return 1
	done
}
stop_pids() {
	local limit=$1 p
	shift
	wait_for "$limit" all_gone "$@" || true
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	wait_for 2 all_gone "$@" || true
	for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# transfer TOOL RATE FILE TAG — one transfer to the receivers (hosts 2..5),
# receivers started first; sets R_TIME (s), R_RC, R_OK (verified copies),
# R_WIRE (tbf bytes), R_PKTS, R_TBFDROP, R_COUNTERS, R_JSON (cm only).
transfer() {
	local tool=$1 rate=$2 src=$3 tag=$4 base want i pids=() t0 t1 w0 w1 dir uid hl=""
	base=$(basename "$src")
	want=$(cat "$src.sha256")
	R_JSON=""
	for i in $(recv_hosts); do
		rm -rf "$run/r$i"
		mkdir -p "$run/r$i"
	done
	case $tool in
	cm | cmnosync)
		local pre=()
		[ "$tool" = cmnosync ] && pre=(eatmydata) # fsync(2) a no-op: a diagnostic
		for i in $(recv_hosts); do
			pids+=("$(lab_bg "$i" "$logs/$tag-r$i.log" ${pre[@]+"${pre[@]}"} "$cm" recv -v \
				--interface "$(lab_ip "$i")" --channel "$CH" --dir "$run/r$i" --id "r$i")")
		done
		sleep 0.3
		;;
	udpcast)
		for i in $(recv_hosts); do
			pids+=("$(lab_bg "$i" "$logs/$tag-r$i.log" timeout "$TIMEOUT" udp-receiver --interface eth0 \
				--nokbd --file "$run/r$i/$base" --start-timeout 60)")
		done
		sleep 0.3
		;;
	uftp)
		for i in $(recv_hosts); do
			uid=$(lab_ip "$i" | awk -F. '{ printf "0x%02X%02X%02X%02X", $1, $2, $3, $4 }')
			hl=${hl:+$hl,}$uid
			# -d: foreground (our pid); -P: a pid file per instance
			pids+=("$(lab_bg "$i" "$logs/$tag-r$i.log" uftpd -d -q -I eth0 -D "$run/r$i" \
				-P "$run/uftpd-$i.pid")")
		done
		sleep 1 # uftpd joins its public group before the first ANNOUNCE
		;;
	esac
	local p0 d0 p1 d1
	read -r w0 p0 d0 <<<"$(tbf_sent)"
	R_RC=0
	t0=$(now_ns)
	case $tool in
	cm | cmnosync)
		lab_exec 1 timeout "$TIMEOUT" "$cm" send --interface "$(lab_ip 1)" --channel "$CH" --rate "$rate" \
			--expect "$NRECV" --json $CM_SEND_ARGS "$src" >"$logs/$tag-send.json" 2>"$logs/$tag-send.log" || R_RC=$?
		;;
	udpcast)
		lab_exec 1 timeout "$TIMEOUT" udp-sender --interface eth0 --file "$src" --nokbd \
			--min-receivers "$NRECV" --max-bitrate "$rate" --start-timeout 60 \
			>"$logs/$tag-send.log" 2>&1 </dev/null || R_RC=$?
		;;
	uftp)
		lab_exec 1 timeout "$TIMEOUT" uftp -I eth0 -R "$rate" -Y none -H "$hl" "$src" \
			>"$logs/$tag-send.log" 2>&1 </dev/null || R_RC=$?
		;;
	esac
	t1=$(now_ns)
	R_TIME=$(secs $((t1 - t0)))
	read -r w1 p1 d1 <<<"$(tbf_sent)"
	R_WIRE=$((w1 - w0))
	R_PKTS=$((p1 - p0))
	R_TBFDROP=$((d1 - d0))
	R_COUNTERS=$(counters_read)
	# udp-receiver exits by itself (after --exit-wait); the daemons do not.
	if [ "$tool" = udpcast ]; then
		stop_pids 10 "${pids[@]}"
	else
		stop_pids 0 "${pids[@]}"
	fi
	[ "$tool" = udpcast ] || [ "$tool" = uftp ] || R_JSON=$logs/$tag-send.json
	R_OK=0
	for i in $(recv_hosts); do
		dir=$run/r$i
		if [ -f "$dir/$base" ] && [ "$(sha256sum <"$dir/$base" | cut -d' ' -f1)" = "$want" ]; then
			R_OK=$((R_OK + 1))
		fi
		rm -rf "$dir"
	done
	[ "$R_RC" = 0 ] && [ "$R_OK" = "$NRECV" ] && return 0
	note "$tag: rc $R_RC, $R_OK/$NRECV verified (logs in $logs)"
	return 0
}

# pooled LOSS — "UNION E DROPS PACKETS" for all runs at LOSS%: each
# receiver's loss rate p_i pooled over the runs, pass 1's union
# 1 - prod_i (1 - p_i), and E = sum_k>=0 (1 - prod_i (1 - p_i^k)).
pooled() {
	awk -F'\t' -v l="$1" '$1 == l {
			k = split($16, a, " ")
			for (i = 1; i <= k; i++) { split(a[i], b, "/"); d[i] += b[1]; n[i] += b[2] }
			m = k
		}
		END {
			u = 1; D = 0; N = 0
			for (i = 1; i <= m; i++) { p[i] = n[i] ? d[i] / n[i] : 0; u *= 1 - p[i]; D += d[i]; N += n[i] }
			e = 0
			for (j = 0; j < 200; j++) { q = 1; for (i = 1; i <= m; i++) q *= 1 - p[i] ^ j; e += 1 - q }
			printf "%.5f %.5f %d %d\n", 1 - u, e, D, N
		}' "$results"
}

# succeeded FILE — the result rows of runs that succeeded (sender exit 0,
# every copy verified).
succeeded() { awk -F'\t' -v n="$NRECV" '$5 == 0 && $6 == n' "$1"; }

# label TOOL RATE — the name a configuration is printed under.
label() {
	case $1 in
	cm) printf 'cm-mcast %s' "$2" ;;
	cmnosync) printf 'cm nofsync %s' "$2" ;;
	udpcast) printf 'udpcast 200m' ;;
	uftp) printf 'uftp 200000k' ;;
	esac
}

# configs — "TOOL:RATE" for every configuration run, in run order.
configs() {
	local t r
	for t in $TOOLS; do
		case $t in
		cm) for r in $CM_RATES; do printf 'cm:%s\n' "$r"; done ;;
		cmnosync) printf 'cmnosync:%s\n' "$CM_TARGET_RATE" ;;
		udpcast) printf 'udpcast:200m\n' ;;
		uftp) printf 'uftp:200000\n' ;;
		*) die "unknown tool $t" ;;
		esac
	done
}

# ---------------------------------------------------------------- the lab

load0=$(cut -d ' ' -f 1 /proc/loadavg)
note "df -h /work: $(df -h /work | awk 'NR == 2 { print $4 " free" }')"
lab_up bmc $((NRECV + 1)) || die "lab_up failed"
lab_rate 1 "$LINK"
counters_reset 0

cmv=$("$cm" --version | awk '{ print $NF }')
udpv=$(dpkg-query -W -f '${Version}' udpcast 2>/dev/null || echo '?')
uftpv=$(dpkg-query -W -f '${Version}' uftp 2>/dev/null || echo '?')
say "== bench/mcast.sh: cm-mcast $cmv, udpcast $udpv, uftp $uftpv; $(nproc) cores, load $load0 at start; lab: 1 sender + $NRECV receivers (namespaces on a bridge), sender's egress tbf rate $LINK burst 64kb latency 50ms (counts IP length + 14 B a packet), loss: nft drop on each receiver's input"

results=$run/results.tsv
: >"$results"
declare -A E_OF # loss -> E, pooled over the runs

# ---------------------------------------------------------------- 1. 200 MiB

if [[ " $PARTS " == *" big "* ]]; then
	big=$(mcfile "${BIG_MIB}M" "$BIG_MIB")
	bigsize=$(fsize "$big")
	for loss in $LOSSES; do
		for rep in $(seq 1 "$RUNS"); do
			while IFS=: read -r tool rate; do
				tag="big-l$loss-$tool-$rate-$rep"
				note "$tag"
				counters_reset "$loss"
				transfer "$tool" "$rate" "$big" "$tag"
				read -r union expect <<<"$(loss_model "$R_COUNTERS")"
				passes=- retx=- jwire=- dpk=-
				if [ -n "$R_JSON" ] && [ -s "$R_JSON" ]; then
					passes=$(json_num "$R_JSON" passes)
					retx=$(json_num "$R_JSON" retransmitted)
					jwire=$(json_num "$R_JSON" wire_bytes)
					dpk=$(json_num "$R_JSON" data_packets)
				fi
				printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
					"$loss" "$tool:$rate" "$rep" "$R_TIME" "$R_RC" "$R_OK" "$R_WIRE" "$R_PKTS" \
					"$R_TBFDROP" "$union" "$expect" "$passes" "$retx" "$jwire" "$dpk" "$R_COUNTERS" >>"$results"
			done < <(configs)
		done
	done

	say "-- 1. ${BIG_MIB} MiB random file ($(group "$bigsize") B) to $NRECV receivers; $RUNS runs of each, interleaved; time = sender's start to its exit (every receiver acked), median of the runs that succeeded; goodput = file bits / time / $LINK; link use = wire bits / time / $LINK; wire = tbf bytes sent (median run); forced = file bytes x E (E: sends per frame that the measured losses force); every copy's sha256 checked"
	say "$(printf '%-5s %-16s %8s %8s %8s %14s %9s %6s %8s %11s %-8s %s' loss tool 'time s' goodput 'link use' 'wire B' 'wire pkt' 'B/pkt' 'tbf drop' wire/forced verified 'times (all runs; ! failed)')"
	for loss in $LOSSES; do
		read -r u e d n <<<"$(pooled "$loss")"
		E_OF[$loss]=$e
		forced=$(awk -v s="$bigsize" -v e="$e" 'BEGIN { printf "%.0f", s * e }')
		while IFS=: read -r tool rate; do
			awk -F'\t' -v l="$loss" -v c="$tool:$rate" '$1 == l && $2 == c' "$results" >"$run/all"
			[ -s "$run/all" ] || continue
			times=$(awk -F'\t' -v n="$NRECV" '{ printf "%s%s ", $4, ($5 == 0 && $6 == n) ? "" : "!" }' "$run/all")
			okall=$(awk -F'\t' -v n="$NRECV" '{ ok += $6; all += n } END { printf "%d/%d", ok, all }' "$run/all")
			succeeded "$run/all" >"$run/sel"
			if [ ! -s "$run/sel" ]; then
				say "$(printf '%-5s %-16s %8s %-66s %-8s %s' "$loss%" "$(label "$tool" "$rate")" failed '' "$okall" "$times")"
				continue
			fi
			# the median run (by time) gives the wire figures
			med=$(sort -t$'\t' -k4,4g "$run/sel" | awk -v n="$(wc -l <"$run/sel")" 'NR == int((n + 1) / 2)')
			IFS=$'\t' read -r _ _ _ t _ _ wire pkts tdrop _ _ passes retx jwire dpk _ <<<"$med"
			say "$(printf '%-5s %-16s %8s %7s%% %7s%% %14s %9s %6s %8s %11s %-8s %s' "$loss%" "$(label "$tool" "$rate")" "$t" \
				"$(awk -v s="$bigsize" -v t="$t" -v r="$LINK_BPS" 'BEGIN { printf "%.1f", 100 * s * 8 / t / r }')" \
				"$(awk -v s="$wire" -v t="$t" -v r="$LINK_BPS" 'BEGIN { printf "%.1f", 100 * s * 8 / t / r }')" \
				"$(group "$wire")" "$(group "$pkts")" "$(awk -v w="$wire" -v p="$pkts" 'BEGIN { printf "%.0f", p ? w / p : 0 }')" \
				"$tdrop" "$(ratio "$wire" "$forced")" "$okall" "$times")"
			if [ "$dpk" != - ]; then
				frames=$((dpk - retx))
				say "$(printf '%-5s %-16s passes %s, frames sent again %s (%.2f%% of %s), --json wire_bytes %s (tbf %s)' "" "" \
					"$passes" "$(group "$retx")" "$(awk -v r="$retx" -v f="$frames" 'BEGIN { print 100 * r / f }')" \
					"$(group "$frames")" "$(group "$jwire")" "$(group "$wire")")"
			fi
		done < <(configs)
		say "$(printf '%-5s loss measured: %s of %s packets dropped at the receivers (%.2f%%); union of pass 1 = %.2f%% of the frames, E = %.4f sends per frame; forced = %s B' \
			"$loss%" "$(group "$d")" "$(group "$n")" "$(awk -v d="$d" -v n="$n" 'BEGIN { print n ? 100 * d / n : 0 }')" \
			"$(awk -v u="$u" 'BEGIN { print 100 * u }')" "$e" "$(group "$forced")")"
		# The least link time any protocol needs: each receiver must get the
		# whole file through its own loss p (ideal erasure coding, no
		# header: 1472 B of data in each 1514-B frame) — and what resending
		# lost frames (no coding) needs at the same framing and at
		# cm-mcast's (1472 - 15 - varint(size) - 2 - 2 B: cm-mcast(7); the
		# last 2 leave room for a repair's index).
		say "$(awk -v l="$loss%" -v s="$bigsize" -v d="$d" -v n="$n" -v e="$e" -v r="$LINK_BPS" 'BEGIN {
			p = n ? d / n : 0
			v = 1; for (x = s; x >= 128; x = int(x / 128)) v++
			f = 1472 - 15 - v - 2 - 2
			printf "%-5s least link time, 1472 B in each 1514-B frame: resending what anyone lost (x E) %.2f s; ideal erasure code (file / (1-p)) %.2f s; cm-mcast'"'"'s %d-B frames x E %.2f s",
				l, s * e * 1514 / 1472 * 8 / r, s / (1 - p) * 1514 / 1472 * 8 / r, f, s * e * 1514 / f * 8 / r }')"
	done
fi

# ---------------------------------------------------------------- 2. 1 MiB

if [[ " $PARTS " == *" small "* ]]; then
	small=$(mcfile 1M 1)
	counters_reset 0
	declare -A small_times small_ok small_json
	for rep in $(seq 1 "$SMALL_RUNS"); do
		while IFS=: read -r tool rate; do
			tag="small-$tool-$rate-$rep"
			note "$tag"
			transfer "$tool" "$rate" "$small" "$tag"
			small_times[$tool:$rate]+="$R_TIME "
			small_ok[$tool:$rate]=$((${small_ok[$tool:$rate]:-0} + R_OK))
			if [ -n "$R_JSON" ] && [ -s "$R_JSON" ]; then
				small_json[$tool:$rate]+="$(json_num "$R_JSON" seconds | awk '{ printf "%.3f", $1 }') "
			fi
		done < <(configs)
	done
	say "-- 2. 1 MiB random file to $NRECV receivers, 0% loss: time = sender's start to its exit; median of $SMALL_RUNS runs"
	say "$(printf '%-16s %8s %8s %8s %-8s %s' tool median min max verified 'times')"
	while IFS=: read -r tool rate; do
		# shellcheck disable=SC2086
		set -- ${small_times[$tool:$rate]}
		say "$(printf '%-16s %8s %8s %8s %-8s %s' "$(label "$tool" "$rate")" "$(median "$@")" \
			"$(printf '%s\n' "$@" | sort -g | head -n 1)" "$(printf '%s\n' "$@" | sort -g | tail -n 1)" \
			"${small_ok[$tool:$rate]}/$((SMALL_RUNS * NRECV))" "$*")"
		if [ -n "${small_json[$tool:$rate]:-}" ]; then
			# shellcheck disable=SC2086
			say "$(printf '%-16s its own --json seconds (from its start, file hashed first): median %s' "" "$(median ${small_json[$tool:$rate]})")"
		fi
	done < <(configs)
fi

# ---------------------------------------------------------------- 3. targets

if [[ " $PARTS " == *" big "* ]]; then
	say "-- 3. targets (cm-mcast at --rate $CM_TARGET_RATE)"
	medtime() { # LOSS CONFIG: the median time of the runs that succeeded
		# shellcheck disable=SC2046
		median $(succeeded "$results" | awk -F'\t' -v l="$1" -v c="$2" '$1 == l && $2 == c { print $4 }')
	}
	medfield() { # LOSS CONFIG FIELD: the field of the median-time run
		succeeded "$results" | awk -F'\t' -v l="$1" -v c="$2" '$1 == l && $2 == c' | sort -t$'\t' -k4,4g |
			awk -F'\t' -v f="$3" '{ v[NR] = $f } END { print v[int((NR + 1) / 2)] }'
	}
	for loss in $LOSSES; do
		t=$(medtime "$loss" "cm:$CM_TARGET_RATE")
		[ -n "$t" ] || continue
		if [ "$loss" = 0 ]; then
			g=$(awk -v s="$bigsize" -v t="$t" -v r="$LINK_BPS" 'BEGIN { printf "%.3f", s * 8 / t / r }')
			say "$(printf '0%% loss: cm-mcast goodput / capped rate           = %s (target >= 0.97: %s)' "$g" "$(verdict_min "$g" 0.97)")"
		else
			best="" bt=""
			for p in udpcast:200m uftp:200000; do
				pt=$(medtime "$loss" "$p")
				[ -n "$pt" ] || continue
				if [ -z "$bt" ] || awk -v a="$pt" -v b="$bt" 'BEGIN { exit !(a < b) }'; then
					bt=$pt best=${p%%:*}
				fi
			done
			if [ -n "$bt" ]; then
				r=$(ratio "$t" "$bt")
				say "$(printf '%s%% loss: cm-mcast time / faster peer'"'"'s (%s %ss) = %s (target <= 0.9: %s)' "$loss" "$best" "$bt" "$r" "$(verdict "$r" 0.9)")"
			fi
		fi
		wire=$(medfield "$loss" "cm:$CM_TARGET_RATE" 7)
		e=${E_OF[$loss]}
		r=$(ratio "$wire" "$(awk -v s="$bigsize" -v e="$e" 'BEGIN { printf "%.0f", s * e }')")
		say "$(printf '%s%% loss: cm-mcast wire bytes / forced by the losses = %s (target <= 1.2: %s)' "$loss" "$r" "$(verdict "$r" 1.2)")"
	done
fi
if [[ " $PARTS " == *" big "* ]]; then
	say "$(awk -F'\t' -v c="cm:$CM_TARGET_RATE" -v n="$NRECV" '$2 == c { all++; if ($5 != 0 || $6 != n) bad++ }
		END { printf "cm-mcast runs that failed (exit != 0 or a copy missing): %d of %d", bad, all }' "$results")"
fi
if [[ " $PARTS " == *" small "* ]]; then
	# shellcheck disable=SC2086
	t=$(median ${small_times[cm:$CM_TARGET_RATE]})
	say "$(printf '1 MiB: cm-mcast median time to all verified          = %s s (target <= 0.15: %s)' "$t" "$(verdict "$t" 0.15)")"
fi

# ---------------------------------------------------------------- 4. memory

if [[ " $PARTS " == *" mem "* ]]; then
	mem=$cache/mcast-sparse-${MEM_MIB}M.bin
	if [ ! -s "$mem" ] || [ ! -s "$mem.sha256" ]; then
		# Zeros (a sparse file, no disk) with 1 MiB of random data every 256 MiB.
		note "making $mem"
		truncate -s "$((MEM_MIB << 20))" "$mem.tmp"
		for off in $(seq 0 256 $((MEM_MIB - 1))); do
			head -c 1M /dev/urandom | dd of="$mem.tmp" bs=1M seek="$off" conv=notrunc status=none
		done
		sha256sum <"$mem.tmp" | cut -d' ' -f1 >"$mem.sha256"
		mv "$mem.tmp" "$mem"
	fi
	need_mb=$(((MEM_MIB * MEM_RECEIVERS) + 512))
	free_mb=$(df -m --output=avail "$work" | tail -n 1)
	[ "$free_mb" -gt "$need_mb" ] || die "the memory test needs ${need_mb} MB free under $work, has $free_mb"
	counters_reset "$MEM_LOSS"
	pids=()
	for i in $(recv_hosts "$MEM_RECEIVERS"); do
		mkdir -p "$run/m$i"
		pids+=("$(lab_bg "$i" "$logs/mem-r$i.log" "$cm" recv -v --interface "$(lab_ip "$i")" \
			--channel "$CH" --dir "$run/m$i" --id "m$i")")
	done
	sleep 0.3
	note "memory: ${MEM_MIB} MiB to $MEM_RECEIVERS receivers"
	rc=0
	t0=$(now_ns)
	lab_exec 1 timeout "$TIMEOUT" /usr/bin/time -f %M -o "$run/send.rss" "$cm" send --interface "$(lab_ip 1)" \
		--channel "$CH" --rate "$CM_TARGET_RATE" --expect "$MEM_RECEIVERS" --json "$mem" \
		>"$logs/mem-send.json" 2>"$logs/mem-send.log" || rc=$?
	t1=$(now_ns)
	rss=""
	for p in "${pids[@]}"; do
		rss+="$(awk '/VmHWM/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo '?') "
	done
	stop_pids 0 "${pids[@]}"
	ok=0
	for i in $(recv_hosts "$MEM_RECEIVERS"); do
		if [ -f "$run/m$i/$(basename "$mem")" ] &&
			[ "$(sha256sum <"$run/m$i/$(basename "$mem")" | cut -d' ' -f1)" = "$(cat "$mem.sha256")" ]; then
			ok=$((ok + 1))
		fi
		rm -rf "$run/m$i"
	done
	srss=$(tail -n 1 "$run/send.rss")
	say "-- 4. memory: a ${MEM_MIB} MiB file (sparse: zeros with 1 MiB of random data every 256 MiB) to $MEM_RECEIVERS receivers at --rate $CM_TARGET_RATE, ${MEM_LOSS}% loss: sender rc $rc, $(secs $((t1 - t0))) s, passes $(json_num "$logs/mem-send.json" passes 2>/dev/null || echo '?'), $ok/$MEM_RECEIVERS copies verified"
	say "$(printf 'peak RSS cm-mcast send (GNU time)  = %s KiB = %.1f MiB (target < 64 MiB: %s)' "$srss" \
		"$(awk -v k="$srss" 'BEGIN { print k / 1024 }')" "$(verdict "$srss" 65535)")"
	for r in $rss; do
		say "$(printf 'peak RSS cm-mcast recv (VmHWM)     = %s KiB = %.1f MiB (target < 64 MiB: %s)' "$r" \
			"$(awk -v k="$r" 'BEGIN { print k / 1024 }')" "$(verdict "$r" 65535)")"
	done
fi
