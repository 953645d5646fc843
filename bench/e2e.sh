#!/usr/bin/env bash
# bench/e2e.sh — the farm end to end (cm-sched, cm-job and every stage)
# against what sysadmins do today: a star of rsync runs from the manager to
# an rsync daemon on every server, all in parallel.
#
# Usage: CM_BIN=/path/to/build bench/e2e.sh        (as root: the farm needs it)
#
# For each SIZES entry P (servers per site; default "4 8 16", so 12, 24 and
# 48 servers in SITES=3 sites): the farm of tests/lab/farm.bash in network
# namespaces (FARM_MODE=ns), with the manager's uplink and every site's WAN
# link capped at RATE (200mbit; FARM_MANAGER_RATE and FARM_WAN_RATE), and on
# every server an rsync daemon (rsync --daemon --no-detach, started with
# lab_bg inside the server's namespace, listening on the server's address;
# module "site" = $F/srv/ID/rsync, written as root).
#
# The site: release A and release B of a real npm package (PKG, OLD -> NEW,
# @mui/material 5.15.14 -> 5.15.15 as in bench/delta.sh; the .tgz files are
# cached in bench/work/cache and shared with it), the package unpacked at the
# root of the site, plus PAD_MB MB of static media under media/ (the same in
# A and B): deterministic pseudo-random bytes (incompressible, like the JPEG,
# WebP and WOFF2 files they are named after; 16-256 KiB each, seeded by file
# number; built once and cached). Every mtime of A is one time, every mtime
# of B a day later: B is a rebuild, every file touched.
#
# Measured for each size, one run each, in this order:
#   1. initial publish, cm:    staging = A, `cm-sched run pub` from an empty
#                              shadow copy, until it returns success
#   2. initial publish, rsync: `rsync -a --delete A/ rsync://IP/site/` to
#                              every server at once from the manager's
#                              namespace, until the last one exits
#   3. update, cm:             staging = B, `cm-sched run pub`
#   4. update, rsync -a:       `rsync -a --delete B/ ...` to every server
#   5. (untimed) every rsync tree put back to A, locally
#   6. update, rsync -a -c:    `rsync -a --delete -c B/ ...`
# Each: wall seconds (time until every server serves the new version: for
# cm the run's success (the commit is live everywhere, quorum 100%), for
# rsync the last client's exit), bytes leaving the manager (eth0 tx_bytes in
# its namespace, so frames with their Ethernet/IP/TCP headers), the whole
# machine's CPU busy during it (/proc/stat; 100% = both cores) and the load
# average after it. Then every server is checked with diff -r against the
# release (cm: $F/srv/ID/site/live; rsync: its module); a run with a server
# that differs is reported as FAILED. For rsync, first/median/last server
# completion; for cm, every leader's seconds from cm-push's reports
# (runs/N/push-*.json). A sync(1) before every timed run: what its set-up
# wrote (cm's staging copy, the reset of rsync's trees) is on disk before
# the clock starts.
#
# Targets (from the issue): initial publish >= 8 x faster than the rsync
# star at 12 servers and >= 30 x at 48; update time <= 0.5 x rsync -c's at
# 12 and <= 0.2 x at 48; manager egress for the update <= 1/40 of rsync -c's
# at 12, and not growing with N (here: at 48 servers at most 1.10 x the
# egress at 12).
#
# Results are plain lines prefixed with the date, ready for
# bench/RESULTS.md; progress goes to stderr. Wall-clock seconds on a shared
# 2-core machine: printed, never asserted. The exit status says only whether
# the benchmark ran.
#
# Environment: CM_BIN (the build dir; default ../build; cm-* and cm-job are
# copied at the start, so a rebuild meanwhile does not mix versions), SIZES
# ("4 8 16"), SITES (3), RATE (200mbit), PKG, OLD, NEW, PAD_MB (90; 0 for the
# package alone), TIMEOUT (1200 s per transfer), E2E_REPORT_TIMEOUT (900 s: how
# long a leader waits for its members to apply and report), SETTLE (65 s, see
# below), DROP_CACHES (0; 1: drop the clean page cache once before the first
# farm, see below), KEEP=1 to keep the run directory (bench/work/e2e.*; also
# kept when a run failed).
#
# This machine's ext4 has no journal: creating a file skips every free inode
# of its group deleted in the last 60 s (6 minutes while the inode's table
# block is not written back), one buffer lookup each, and the servers' first
# publish right after the previous run's farm was deleted took twice as long,
# all of it in the kernel. So before the first farm: sync, then SETTLE
# seconds; nothing is deleted later in a run.
#
# This machine is a VM, and memory the page cache has not used for a while
# costs more to fill again: with 10 GB of other files cached, 12 cm-apply
# runs of the first publish at once took 3-5 s and 5-7 cpu-s, against
# 1.8-2.1 s and 2.6-2.8 cpu-s right after `echo 1 >/proc/sys/vm/drop_caches`
# (copy_folio_from_iter_atomic, the copy into the page cache, was 44 % of
# the CPU in the slow runs). DROP_CACHES=1 drops the clean page cache once,
# before the first farm (the corpus is read again afterwards, so every tool
# starts warm); the default leaves the machine as it is. Results say which.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"
# shellcheck source=tests/lab/lab.bash
. "$src/tests/lab/lab.bash"
# shellcheck source=tests/lab/farm.bash
. "$src/tests/lab/farm.bash"

CM_BIN=${CM_BIN:-$src/build}
SIZES=${SIZES:-4 8 16}
SITES=${SITES:-3}
RATE=${RATE:-200mbit}
PKG=${PKG:-@mui/material}
OLD=${OLD:-5.15.14}
NEW=${NEW:-5.15.15}
PAD_MB=${PAD_MB:-90}
TIMEOUT=${TIMEOUT:-1200}
KEEP=${KEEP:-0}
SETTLE=${SETTLE:-65}
DROP_CACHES=${DROP_CACHES:-0}

for p in cm-delta cm-assign cm-push cm-elect cm-mcast cm-apply cm-sched cm-job; do
	[ -x "$CM_BIN/$p" ] || die "$CM_BIN/$p not found (build with make, or point CM_BIN at the build dir)"
done
need rsync timeout diff python3 tar ip tc nft awk
lab_need_root || die "the farm needs root"
for p in $SIZES; do
	if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 30 ]; then
		die "bad size $p (servers per site, 1..30)"
	fi
done

work=$here/work
cache=$work/cache
mkdir -p "$cache"
# Every farm stays on disk until the end: each server holds the site twice
# (cm's versions, rsync's copy), about 360 MB here. A run on an almost full
# ext4 measures its block allocator, not cm or rsync: refuse it.
need_mb=1024
for p in $SIZES; do need_mb=$((need_mb + SITES * p * 400)); done
have_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
[ "$have_mb" -ge "$need_mb" ] || die "$work has $have_mb MB free; this run needs about $need_mb MB (SIZES=\"$SIZES\")"
# A fresh, uniquely named run dir on disk (the servers' copies would not fit
# in RAM); everything in it goes at the end, never before a timed run.
run=$(mktemp -d "$work/e2e.XXXXXX")
FAILED=0
FARM_ON=0

cleanup() {
	if [ "$FARM_ON" = 1 ]; then
		farm_down
		FARM_ON=0
	fi
	local p
	for p in $(jobs -p); do wait "$p" 2>/dev/null || true; done
	if [ "$KEEP" = 1 ] || [ "$FAILED" = 1 ]; then
		note "kept $run"
	else
		note "removing $run"
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'note "failed at line $LINENO"' ERR

# The programs, copied: the farm's daemons and cm-sched find them on PATH
# (cm-sched runs the cm-job beside it).
bin=$run/bin
mkdir "$bin"
for p in cm-delta cm-assign cm-push cm-elect cm-mcast cm-apply cm-sched cm-job; do cp "$CM_BIN/$p" "$bin/"; done
export PATH="$bin:$PATH"
cmv="$(cm-sched --version 2>/dev/null | awk 'NR == 1 { print $NF }'), built $(date -r "$CM_BIN/cm-sched" '+%F %H:%M')"
rsv=$(rsync --version | awk 'NR == 1 { print $3 }')

# ---------------------------------------------------------------- the site

# media DIR — PAD_MB MB of incompressible "static assets", built once.
media=$cache/e2e-media-$PAD_MB
if [ "$PAD_MB" -gt 0 ] && [ ! -e "$media.ok" ]; then
	note "building $PAD_MB MB of static media (once): $media"
	[ ! -e "$media" ] || die "$media exists without $media.ok: remove it by hand"
	tmp=$(mktemp -d "$cache/media.XXXXXX")
	python3 - "$tmp" "$PAD_MB" <<'EOF'
import os, random, sys
out, mb = sys.argv[1], int(sys.argv[2])
total, i = 0, 0
exts = ["jpg", "jpg", "jpg", "webp", "jpg", "woff2", "jpg", "webp"]
while total < mb * 1000000:
    size = (16 + (i * 37) % 241) * 1024  # 16..256 KiB
    d = os.path.join(out, "%02d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "asset%05d.%s" % (i, exts[i % len(exts)])), "wb") as f:
        f.write(random.Random(i).randbytes(size))
    total += size
    i += 1
EOF
	mv "$tmp" "$media"
	touch "$media.ok"
fi

t_old=1700000000
make_release() { # DIR TGZ MTIME
	mkdir "$1"
	tar -xzf "$2" -C "$1" --strip-components=1
	if [ "$PAD_MB" -gt 0 ]; then cp -r "$media" "$1/media"; fi
	find "$1" -exec touch -h -d "@$3" {} +
}
A=$run/A
B=$run/B
make_release "$A" "$(npm_fetch "$cache" "$PKG" "$OLD")" "$t_old"
make_release "$B" "$(npm_fetch "$cache" "$PKG" "$NEW")" "$((t_old + 86400))"
files_a=$(find "$A" -type f | wc -l)
bytes_a=$(find "$A" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
bytes_b=$(find "$B" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
n_changed=0 n_added=0 n_deleted=0 b_changed=0
while IFS= read -r -d '' f; do
	if [ -f "$A/$f" ]; then
		cmp -s "$A/$f" "$B/$f" || {
			n_changed=$((n_changed + 1))
			b_changed=$((b_changed + $(fsize "$B/$f")))
		}
	else
		n_added=$((n_added + 1))
	fi
done < <(cd "$B" && find . -type f -printf '%P\0')
while IFS= read -r -d '' f; do
	[ -e "$B/$f" ] || n_deleted=$((n_deleted + 1))
done < <(cd "$A" && find . -type f -printf '%P\0')
pad_files=0
[ "$PAD_MB" -gt 0 ] && pad_files=$(find "$media" -type f | wc -l)
pad_bytes=0
[ "$PAD_MB" -gt 0 ] && pad_bytes=$(find "$media" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')

# M/B: seconds for one copy of A at RATE.
mb_secs=$(awk -v m="$bytes_a" -v r="$RATE" 'BEGIN {
	v = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
	if (u == "kbit") v *= 1e3; else if (u == "mbit") v *= 1e6; else if (u == "gbit") v *= 1e9
	printf "%.2f", m * 8 / v }')

# ---------------------------------------------------------------- helpers

# push-summary.py T0_NS REPORT... — one line per cm-push report of a run:
# when it was sent (from T0), how long each leader's fetch took, how long
# each server took to receive it by multicast and apply it (the members'
# seconds in the group reports, the leader's own apply among them), the most
# multicast passes, and when the whole push was done.
cat >"$run/push-summary.py" <<'EOF'
import json, os, sys

t0 = int(sys.argv[1]) / 1e6
def spread(v):
    if not v:
        return "-"
    v = sorted(v)
    return "%.2f/%.2f/%.2f" % (v[0], v[(len(v) - 1) // 2], v[-1])
for path in sys.argv[2:]:
    r = json.load(open(path))
    name = os.path.basename(path)[5:-5]
    fetch, member, apply_, passes = [], [], [], [0]
    for l in r.get("leaders", []):
        if "seconds" in l:
            fetch.append(l["seconds"])
        for m in (l.get("group") or {}).get("members", []):
            if "seconds" in m:
                member.append(m["seconds"])
            if isinstance(m.get("output"), dict) and "seconds" in m["output"]:
                apply_.append(m["output"]["seconds"])
            passes.append(m.get("pass", 0))
    s = "%s %s B: sent at +%.2f s" % (name, "{:,}".format(r.get("bytes", 0)), (r.get("created_ms", t0) - t0) / 1e3)
    if "finished_ms" in r:
        s += ", done at +%.2f s" % ((r["finished_ms"] - t0) / 1e3)
    s += "; leaders' fetch %s s; servers' receive+apply %s s (apply %s s), max pass %d" % (
        spread(fetch), spread(member), spread(apply_), max(passes))
    print(s)
EOF

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
cpu_sample() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }
manager_ns() { _lab_ns "$(_farm_host m)"; }

# begin / end — the clock, the manager's egress and the CPU around a run;
# end sets R_SECS, R_EGRESS, R_CPU, R_LOAD.
begin() {
	# What the set-up steps wrote (the staging copy, the local reset of
	# rsync's trees) goes to disk first: not into the timed tool's fsyncs,
	# nor its CPU (as in bench/apply.sh, a sync before every timed command).
	sync
	E0=$(farm_manager_tx)
	read -r CB0 CT0 <<<"$(cpu_sample)"
	T0=$(now_ns)
}
end() {
	local t1 e1 cb1 ct1
	t1=$(now_ns)
	e1=$(farm_manager_tx)
	read -r cb1 ct1 <<<"$(cpu_sample)"
	R_SECS=$(secs $((t1 - T0)))
	R_EGRESS=$((e1 - E0))
	R_CPU=$(awk -v b=$((cb1 - CB0)) -v t=$((ct1 - CT0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')
	R_CPUS=$(awk -v b=$((cb1 - CB0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", b / hz }')
	R_LOAD=$(cut -d' ' -f1 /proc/loadavg)
}


# check WANT DIR_FN — diff -r WANT against every server's copy (DIR_FN ID
# prints it); sets R_OK and R_BAD.
check() {
	local want=$1 fn=$2 id
	R_OK=0 R_BAD=""
	for id in $(farm_ids); do
		if diff -r "$want" "$("$fn" "$id")" >/dev/null 2>&1; then
			R_OK=$((R_OK + 1))
		else
			R_BAD+=" $id"
		fi
	done
}
cm_live() { echo "$(farm_root "$1")/live"; }
rsync_dir() { echo "$F/srv/$1/rsync"; }

# rsyncd ID — an rsync daemon inside the server's namespace.
rsyncd() {
	local id=$1 d ip
	d=$F/srv/$id
	ip=$(_farm_ip "$id")
	mkdir -p "$d/rsync"
	cat >"$d/rsyncd.conf" <<EOF
uid = 0
gid = 0
use chroot = no
numeric ids = yes
munge symlinks = no
reverse lookup = no
max connections = 0
log file = $d/rsyncd.log
[site]
	path = $d/rsync
	read only = no
EOF
	lab_bg "$(_farm_host "$id")" "$d/rsyncd.out" rsync --daemon --no-detach --config="$d/rsyncd.conf" \
		--address="$ip" --port=873 >/dev/null
}
rsyncd_up() { farm_exec "$1" bash -c "exec 3<>/dev/tcp/$(_farm_ip "$1")/873" 2>/dev/null; }

# star TAG TREE OPTS... — rsync OPTS TREE/ to every server at once from the
# manager's namespace; sets R_* and R_PER (first/median/last server).
star() {
	local tag=$1 tree=$2 id p rc=0 pids=() t per=()
	shift 2
	rm -f "$run/$tag".*.done
	begin
	for id in $(farm_ids); do
		(
			r=0
			timeout -k 5 "$TIMEOUT" ip netns exec "$(manager_ns)" rsync "$@" "$tree/" \
				"rsync://$(_farm_ip "$id")/site/" >"$run/$tag.$id.log" 2>&1 || r=$?
			echo "$r $(now_ns)" >"$run/$tag.$id.done"
			exit "$r"
		) &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	end
	for id in $(farm_ids); do
		read -r _ t <"$run/$tag.$id.done"
		per+=("$(secs $((t - T0)))")
	done
	R_PER=$(spread "${per[@]}")
	[ "$rc" = 0 ] || note "$tag: an rsync failed (logs $run/$tag.*.log)"
	return "$rc"
}

# cm_pub — `cm-sched run pub` in the manager's namespace, bounded; sets
# R_* and R_PER (each leader's seconds from the cm-push reports), R_RUN.
cm_pub() {
	local rc=0 f
	begin
	timeout -k 10 "$TIMEOUT" ip netns exec "$(manager_ns)" cm-sched run pub --db "$F/cm.db" \
		>"$run/cm-$N-$1.out" 2>&1 || rc=$?
	end
	# After a switch every cm-apply leaves a child making its spare, in
	# the background: untimed, but not into the next tool's time.
	local w0
	w0=$(now_ns)
	wait_for 300 bash -c '! pgrep -x cm-apply >/dev/null' || note "background cm-apply still running after 300 s"
	R_SPARE=$(secs $(($(now_ns) - w0)))
	R_RUN=$(find "$F/runs" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -n | tail -n 1)
	R_PER=$(python3 "$run/push-summary.py" "$T0" "$F/runs/$R_RUN"/push-*.json) || R_PER="(no cm-push report)"
	[ "$rc" = 0 ] || note "cm-sched run pub exited $rc ($run/cm-$N-$1.out, $F/runs/$R_RUN/log)"
	return "$rc"
}

# per_leader — R_PER (one line per push of the run), indented.
per_leader() {
	local l
	while IFS= read -r l; do
		[ -z "$l" ] || say "             $l"
	done <<<"$R_PER"
	say "             then the servers' spares, in the background (untimed): $R_SPARE s"
}

# row WHAT — one result line from R_*; checks made by the caller.
row() {
	local what=$1 ok=$2
	say "$(printf '%3d servers  %-20s %8s s  %11s B (%6s MB)  cpu %3s%% (%4s cpu-s)  load %5s  %s' "$N" "$what" \
		"$R_SECS" "$(group "$R_EGRESS")" "$(mb "$R_EGRESS")" "$R_CPU" "$R_CPUS" "$R_LOAD" "$ok")"
}

# result KEY — saves R_SECS and R_EGRESS under KEY (e.g. cm_init_12).
declare -A SECS=() EGR=()
result() {
	SECS[$1]=$R_SECS
	EGR[$1]=$R_EGRESS
}

# verified WANT FN — "verified N/N" or "FAILED ...", and FAILED=1.
verified() {
	check "$1" "$2"
	if [ "$R_OK" = "$N" ]; then
		V="verified $R_OK/$N"
	else
		V="FAILED: $R_OK/$N identical, differ:$R_BAD"
		FAILED=1
	fi
}

# ---------------------------------------------------------------- the runs

load0=$(cut -d' ' -f1 /proc/loadavg)
say "== bench/e2e.sh: cm $cmv, rsync $rsv; $(nproc) cores, load $load0 at start; one run per measurement; page cache $([ "$DROP_CACHES" = 1 ] && echo "dropped before the first farm" || echo "as found")"
say "farm: $SITES sites, the manager's uplink (FARM_MANAGER_RATE) and each site's WAN link (FARM_WAN_RATE) capped at $RATE; rsync daemon on every server, clients in the manager's namespace"
say "site A: $PKG $OLD (npm pack) + $(group "$pad_files") media files, $(group "$files_a") files, $(group "$bytes_a") B; M/B = $mb_secs s at $RATE"
say "  media/: $(group "$pad_bytes") B of deterministic pseudo-random .jpg/.webp/.woff2 files (16-256 KiB; incompressible, stored as is by cm-assign), the same in A and B"
say "update A -> B: $PKG $OLD -> $NEW, every mtime touched (a rebuild); by content $n_changed changed ($(group "$b_changed") B), $n_added added, $n_deleted deleted; B is $(group "$bytes_b") B"

export FARM_MODE=ns
FARM_WAN_RATE=$RATE
FARM_MANAGER_RATE=$RATE
FARM_SITES=$SITES
# Every server of the farm shares this machine's cores: 48 cm-apply runs of a
# new site at once take minutes here, not the seconds they take on 48 hosts.
# (farm.bash, sourced above, has set its own default of 20 s: E2E_REPORT_TIMEOUT.)
FARM_REPORT_TIMEOUT=${E2E_REPORT_TIMEOUT:-900}
note "sync, then $SETTLE s for inodes deleted before the run to age (see the top)"
sync
if [ "$DROP_CACHES" = 1 ]; then
	note "dropping the clean page cache (DROP_CACHES=1, see the top)"
	echo 1 >/proc/sys/vm/drop_caches
fi
sleep "$SETTLE"
for P in $SIZES; do
	N=$((SITES * P))
	FARM_SERVERS=$P
	LAB_PREFIX="e2e$$n$N"
	F=$run/farm$N
	note "$N servers: bringing the farm up ($SITES sites x $P, $RATE)"
	FARM_ON=1
	timed farm_up "$F" || die "the farm of $N servers did not come up (logs under $F)"
	note "$N servers: farm up in $T_WALL s; starting rsync daemons"
	for id in $(farm_ids); do rsyncd "$id"; done
	for id in $(farm_ids); do wait_for 20 rsyncd_up "$id" || die "rsync daemon of $id not listening"; done
	farm_sched job add pub --type publish --site www --group all --sign-key "$F/keys/site.sec" \
		--timeout "$TIMEOUT" >/dev/null
	sleep 3 # let the farm settle (elections, first ticks)
	say "-- $N servers ($SITES x $P), farm up in $T_WALL s, load $(cut -d' ' -f1 /proc/loadavg)"

	# 1. initial publish, cm
	cp -a "$A" "$F/staging.A" && rmdir "$F/staging" && mv "$F/staging.A" "$F/staging"
	note "$N servers: initial publish, cm"
	if cm_pub init; then verified "$A" cm_live; else V="FAILED: cm-sched run exited non-zero"; FAILED=1; fi
	row "initial, cm-sched" "$V"
	per_leader
	result "cm_init_$N"

	# 2. initial publish, rsync star
	note "$N servers: initial publish, rsync star"
	if star "init-$N" "$A" -a --delete; then verified "$A" rsync_dir; else V="FAILED: an rsync exited non-zero"; FAILED=1; fi
	row "initial, rsync -a" "$V"
	say "             servers done (first/median/last): $R_PER s"
	result "rs_init_$N"

	# 3. update, cm
	mv "$F/staging" "$F/staging.old-A"
	cp -a "$B" "$F/staging"
	note "$N servers: update, cm"
	if cm_pub update; then verified "$B" cm_live; else V="FAILED: cm-sched run exited non-zero"; FAILED=1; fi
	row "update, cm-sched" "$V"
	per_leader
	result "cm_upd_$N"

	# 4. update, rsync -a --delete
	note "$N servers: update, rsync -a"
	if star "upd-$N" "$B" -a --delete; then verified "$B" rsync_dir; else V="FAILED: an rsync exited non-zero"; FAILED=1; fi
	row "update, rsync -a" "$V"
	say "             servers done (first/median/last): $R_PER s"
	result "rs_upd_$N"

	# 5. back to A, locally (untimed)
	note "$N servers: putting every rsync tree back to A (locally, untimed)"
	for id in $(farm_ids); do
		rsync -a --delete -c "$A/" "$(rsync_dir "$id")/"
	done

	# 6. update, rsync -a --delete -c
	note "$N servers: update, rsync -a -c"
	if star "updc-$N" "$B" -a --delete -c; then verified "$B" rsync_dir; else V="FAILED: an rsync exited non-zero"; FAILED=1; fi
	row "update, rsync -a -c" "$V"
	say "             servers done (first/median/last): $R_PER s"
	result "rc_upd_$N"

	cp "$F/cm.db" "$run/cm-$N.db" 2>/dev/null || true
	note "$N servers: tearing the farm down"
	farm_down
	FARM_ON=0
done

# ---------------------------------------------------------------- ratios

line() { say "$(printf '%-58s = %s' "$1" "$2")"; }
say "summary (s; MB leaving the manager):"
say "$(printf '%-8s %9s %9s %8s   %9s %9s %9s   %9s %9s %9s' servers "init cm" "init rs" speedup "upd cm" "upd rs-a" "upd rs-c" "MB cm" "MB rs-a" "MB rs-c")"
for P in $SIZES; do
	N=$((SITES * P))
	say "$(printf '%-8s %9s %9s %8s   %9s %9s %9s   %9s %9s %9s' "$N" "${SECS[cm_init_$N]}" "${SECS[rs_init_$N]}" \
		"$(ratio "${SECS[rs_init_$N]}" "${SECS[cm_init_$N]}")" "${SECS[cm_upd_$N]}" "${SECS[rs_upd_$N]}" \
		"${SECS[rc_upd_$N]}" "$(mb "${EGR[cm_upd_$N]}")" "$(mb "${EGR[rs_upd_$N]}")" "$(mb "${EGR[rc_upd_$N]}")")"
	line "rsync star initial / (N x M/B) at $N" "$(ratio "${SECS[rs_init_$N]}" "$(awk -v n="$N" -v s="$mb_secs" 'BEGIN { print n * s }')")"
done
first=$((SITES * ${SIZES%% *}))
last=$((SITES * ${SIZES##* }))
for N in 12 48; do
	[ -n "${SECS[cm_init_$N]:-}" ] || continue
	q=$(ratio "${SECS[rs_init_$N]}" "${SECS[cm_init_$N]}")
	t=8
	[ "$N" = 48 ] && t=30
	line "initial: rsync star time / cm time at $N" "$q (target >= $t: $(verdict_min "$q" "$t"))"
	q=$(ratio "${SECS[cm_upd_$N]}" "${SECS[rc_upd_$N]}")
	t=0.5
	[ "$N" = 48 ] && t=0.2
	line "update: cm time / rsync -c time at $N" "$q (target <= $t: $(verdict "$q" "$t"))"
	line "update: cm time / rsync -a time at $N" "$(ratio "${SECS[cm_upd_$N]}" "${SECS[rs_upd_$N]}")"
done
if [ -n "${EGR[cm_upd_12]:-}" ]; then
	q=$(ratio "${EGR[cm_upd_12]}" "${EGR[rc_upd_12]}")
	line "update: cm egress / rsync -c egress at 12" "$q (target <= 0.025: $(verdict "$q" 0.025))"
	line "update: cm egress / rsync -a egress at 12" "$(ratio "${EGR[cm_upd_12]}" "${EGR[rs_upd_12]}")"
fi
if [ "$first" != "$last" ]; then
	q=$(ratio "${EGR[cm_upd_$last]}" "${EGR[cm_upd_$first]}")
	line "update: cm egress at $last / at $first" "$q (not growing with N, <= 1.10: $(verdict "$q" 1.10))"
	line "update: rsync -c egress at $last / at $first" "$(ratio "${EGR[rc_upd_$last]}" "${EGR[rc_upd_$first]}")"
	line "initial: cm egress at $last / at $first" "$(ratio "${EGR[cm_init_$last]}" "${EGR[cm_init_$first]}")"
fi
say "load at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores: above 2 the runs were CPU-bound, above 4 shared with other work)"
[ "$FAILED" = 0 ] || note "some runs FAILED: kept $run"
