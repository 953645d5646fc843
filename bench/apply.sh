#!/usr/bin/env bash
# bench/apply.sh — cm-apply side by side with `rsync -a` between local
# directories and `tar -x`.
#
# Usage: CM_BIN=/path/to/build bench/apply.sh
#
# 1. Replicate: a synthetic site of REP_DIRS x REP_FILES files (500 x 100 =
#    50,000 files, 1 GiB: sizes spread evenly around REP_MEAN bytes, 40 %
#    random bytes and 60 % text in each file, every tenth file 0755; built
#    once, cached in bench/work/cache). cm-assign builds the replicate pack
#    (timed, reported, not part of the ratio), then, each into a fresh,
#    uniquely named directory:
#      a. cm-apply --root SITE REPLICATE_PACK (until it exits: staged and
#         synced with syncfs), then cm-apply --root SITE COMMIT_PACK;
#      b. rsync -a TREE/ DST/;
#      c. tar -xf TREE.tar -C DST (an uncompressed tar, made once per run);
#      d. with TZST=1, tar --zstd -xf TREE.tar.zst -C DST too (off by
#         default: another 1.6 GB of disk).
#    The peers do not sync; after each of them `sync -f DST` (a syncfs of
#    the file system, what cm-apply does) is timed separately, and the
#    results are given with and without it.
# 2. Publish: the npm corpus update of bench/delta.sh (PKG OLD -> NEW, every
#    mtime reset as a rebuild would). A site at OLD (replicate + commit,
#    untimed), then cm-apply of the publish pack and its commit, against
#    `rsync -a --delete NEW/ COPY/` and `tar -xf CHANGED.tar -C COPY`
#    (the files whose content changed or that were added), each COPY a
#    `cp -a` of OLD made before the timed runs. Shown too, for information:
#    `rsync -a -c`, and cm-apply's way done with common tools (cp -al of
#    live, tar -x of the changed files into it, sync -f, a symlink renamed
#    over live). cm-apply runs twice: as installed (after a switch it
#    makes a spare copy of live in the background, untimed here but
#    reported, and the publish stages from it) and with --no-spare (the
#    staging tree a hard-link clone of live).
# 3. The issue's target: cm-apply (apply + commit) <= 1.2 x the faster of
#    rsync and tar. The fair comparison counts the peers' sync (cm-apply's
#    success means "on disk"); the ratio without it is printed too.
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md. Before each timed command: `sync` (no write-back left
# over from the previous one), then with CACHE=warm (the default) the
# command's input is read once so that it comes from the page cache; with
# CACHE=cold the page cache is dropped instead (needs root). On a shared
# machine: printed, never asserted. The exit status says only whether the
# benchmark ran.
#
# On this machine's ext4 (mounted with discard), creating many files right
# after deleting many is several times slower for minutes: nothing is
# deleted before a timed run. With REP_RUNS > 1 the previous round's
# destinations are deleted and the next round waits SETTLE_MIN seconds,
# then until a probe (tar -x of PROBE_FILES files of the tree) is back to
# the speed of the fastest probe, at most SETTLE seconds in all. (Between
# two runs of this script, wait some minutes too: its cleanup deletes
# gigabytes.) The tools go in a different order each
# round.
#
# Environment: CM_BIN (dir holding cm-delta, cm-assign, cm-apply; default
# ../build), PKG, OLD, NEW (as bench/delta.sh), REP_DIRS (500), REP_FILES
# (100), REP_MEAN (21475), REP_RUNS (1), SETTLE_MIN (420), SETTLE (600), PROBE_FILES (2000),
# PUB_RUNS (5), CACHE
# (warm|cold), TZST (0), QUIET_LOAD (1.0) and QUIET_MAX (900: before each
# round, wait up to that many seconds for the 1-minute load to fall to
# QUIET_LOAD), SKIP_REP=1 / SKIP_PUB=1 to run one half only,
# KEEP=1 to keep the run directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"

CM_BIN=${CM_BIN:-$here/../build}
PKG=${PKG:-@mui/material}
OLD=${OLD:-5.15.14}
NEW=${NEW:-5.15.15}
REP_DIRS=${REP_DIRS:-500}
REP_FILES=${REP_FILES:-100}
REP_MEAN=${REP_MEAN:-21475}
REP_RUNS=${REP_RUNS:-1}
SETTLE=${SETTLE:-600}
SETTLE_MIN=${SETTLE_MIN:-420}
PROBE_FILES=${PROBE_FILES:-2000}
PUB_RUNS=${PUB_RUNS:-5}
CACHE=${CACHE:-warm}
TZST=${TZST:-0}
QUIET_LOAD=${QUIET_LOAD:-1.0}
QUIET_MAX=${QUIET_MAX:-900}
SKIP_REP=${SKIP_REP:-0}
SKIP_PUB=${SKIP_PUB:-0}
KEEP=${KEEP:-0}

for p in cm-delta cm-assign cm-apply; do
	[ -x "$CM_BIN/$p" ] || die "$CM_BIN/$p not found (build with make, or point CM_BIN at the build dir)"
done
need rsync tar zstd python3 cmp diff sync
case $CACHE in
warm) ;;
cold)
	[ -w /proc/sys/vm/drop_caches ] || die "CACHE=cold needs root (writes /proc/sys/vm/drop_caches)"
	;;
*) die "CACHE is warm or cold, not '$CACHE'" ;;
esac
# Reproducible packs.
export SOURCE_DATE_EPOCH=1700086400

work=$here/work
cache=$work/cache
mkdir -p "$cache"
# A fresh, uniquely named run dir; everything in it goes at the end.
run=$(mktemp -d "$work/run.XXXXXX")
cleanup() {
	if [ "$KEEP" = 1 ]; then
		note "kept $run"
	else
		note "removing $run"
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'note "failed at line $LINENO"' ERR

# The programs as they are now: a rebuild during the run (others work in
# this tree) must not change or break what is measured.
mkdir "$run/bin"
cp -p "$CM_BIN/cm-delta" "$CM_BIN/cm-assign" "$CM_BIN/cm-apply" "$run/bin/"
cmd=$run/bin/cm-delta
cma=$run/bin/cm-assign
cmp_=$run/bin/cm-apply
built=$(date -u -r "$cmp_" '+%F %H:%M UTC')
head=$(git -C "$here/.." describe --always --dirty 2>/dev/null || echo '?')

# quiet — on a shared machine: wait (at most QUIET_MAX s) until the 1-minute
# load is at most QUIET_LOAD; sets LOAD to the load when it goes on.
quiet() {
	local waited=0
	LOAD=$(cut -d ' ' -f 1 /proc/loadavg)
	while awk -v l="$LOAD" -v q="$QUIET_LOAD" 'BEGIN { exit !(l > q) }'; do
		if [ "$waited" -ge "$QUIET_MAX" ]; then
			note "load still $LOAD after $QUIET_MAX s; going on"
			return
		fi
		[ "$waited" -gt 0 ] || note "waiting for the load ($LOAD) to fall to $QUIET_LOAD"
		sleep 15
		waited=$((waited + 15))
		LOAD=$(cut -d ' ' -f 1 /proc/loadavg)
	done
}

load0=$(cut -d ' ' -f 1 /proc/loadavg)

# prepare INPUT... — before a timed command: no write-back left over, and
# its input in the page cache (warm) or nothing in the page cache (cold).
# An INPUT directory is read through tar into a pipe (GNU tar skips reading
# when it writes to /dev/null).
prepare() {
	local f
	sync
	if [ "$CACHE" = cold ]; then
		echo 3 >/proc/sys/vm/drop_caches
		return
	fi
	for f in "$@"; do
		if [ -d "$f" ]; then
			tar -cf - -C "$f" . | cat >/dev/null
		else
			cat "$f" >/dev/null
		fi
	done
}

# spare_wait SITE — until the spare cm-apply makes in the background after
# a switch is done (cm-apply status waits for the site's lock).
spare_wait() { "$cmp_" status --root "$1" >/dev/null || die "cm-apply status $1 failed"; }

# apply SITE PACK REPORT RESULT [OPTION...] — cm-apply, its JSON report
# kept; dies unless the result is RESULT. Sets T_WALL to cm-apply's time
# alone: the check of its report is not timed (it was before 2026-11-27
# 16:30 UTC, a grep(1) started, about 1 ms more for every cm-apply run).
apply() {
	local site=$1 pack=$2 rep=$3 want=$4 rc=0
	shift 4
	timed "$cmp_" --root "$site" --json "$@" "$pack" >"$rep" || rc=$?
	[ "$rc" = 0 ] || die "cm-apply failed on $pack: $(cat "$rep")"
	grep -q "\"result\":\"$want\"" "$rep" || die "cm-apply $pack: not $want: $(cat "$rep")"
}

# same_tree A B — content, types, modes and symlink targets alike (mtimes
# are not compared: tar of the changed files keeps the old ones elsewhere).
same_tree() {
	diff -r --no-dereference -q "$1" "$2" >/dev/null || return 1
	cmp -s <(cd "$1" && find . -printf '%P %y %m %l\n' | LC_ALL=C sort) \
		<(cd "$2" && find . -printf '%P %y %m %l\n' | LC_ALL=C sort)
}

# tsum A B — A + B with 3 decimals.
tsum() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }

# tmin A B — the smaller.
tmin() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (a <= b) ? a : b }'; }

# fastest NAME=TIME... — "NAME" of the smallest TIME.
fastest() {
	printf '%s\n' "$@" | awk -F= 'NR == 1 || $2 < m { m = $2; n = $1 } END { print n }'
}

row() { # NAME TIME SYNC TOTAL
	say "$(printf '%-48s %9s %9s %9s' "$@")"
}
rat() { ratio_line 64 "$@"; } # LABEL VALUE [LIMIT]

tarv=$(tar --version | awk 'NR == 1 { print $NF }')
rsv=$(rsync --version | awk 'NR == 1 { print $3 }')
fsinfo="$(findmnt -no FSTYPE -T "$work" 2>/dev/null || echo '?') file system"
if findmnt -no OPTIONS -T "$work" 2>/dev/null | grep -qw discard; then fsinfo+=" mounted with discard"; fi
say "== bench/apply.sh: cm-apply $(ver "$cmp_") (built $built, tree $head), cm-assign $(ver "$cma"), rsync $rsv, GNU tar $tarv; $(nproc) cores, load $load0 at start; $CACHE page cache; a sync before every timed command; $fsinfo"

# ---------------------------------------------------------------- replicate

if [ "$SKIP_REP" != 1 ]; then
	tree=$cache/apply-tree-${REP_DIRS}x${REP_FILES}x$REP_MEAN
	if [ ! -e "$tree.ok" ]; then
		# Built once and kept: making 50,000 files (and deleting them after)
		# every run would cost more than the measurements.
		note "building the replicate tree ($REP_DIRS x $REP_FILES files around $REP_MEAN B, once)"
		[ ! -e "$tree" ] || die "$tree exists without $tree.ok: remove it by hand"
		tmp=$(mktemp -d "$cache/apply-tree.XXXXXX")
		mkdir "$tmp/t"
		python3 - "$tmp/t" "$REP_DIRS" "$REP_FILES" "$REP_MEAN" <<'EOF'
import os, random, sys
root, ndirs, nfiles, mean = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(20261125)
alpha = 'abcdefghijklmnopqrstuvwxyz'
words = [''.join(rng.choice(alpha) for _ in range(rng.randint(2, 10))) for _ in range(3000)]
text = ' '.join(rng.choice(words) for _ in range(600000)).encode()
spread = mean * 9 // 10
exts = ['html', 'js', 'css', 'json', 'svg']
t = 1700000000 * 10**9
for d in range(ndirs):
    dd = '%s/d%03d' % (root, d)
    os.mkdir(dd)
    for f in range(nfiles):
        # Sizes even over mean +- 90 %; 40 % random bytes, 60 % words.
        size = rng.randint(mean - spread, mean + spread)
        nrand = size * 2 // 5
        off = rng.randrange(len(text) - size)
        p = '%s/f%02d.%s' % (dd, f, exts[f % len(exts)])
        with open(p, 'wb') as fh:
            fh.write(rng.randbytes(nrand) + text[off:off + size - nrand])
        if f % 10 == 9:
            os.chmod(p, 0o755)
        os.utime(p, ns=(t, t))
    os.utime(dd, ns=(t, t))
os.utime(root, ns=(t, t))
EOF
		mv "$tmp/t" "$tree"
		rmdir "$tmp"
		touch "$tree.ok"
	fi
	n_rep=$(find "$tree" -type f | wc -l)
	b_rep=$(find "$tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

	note "replicate: building the packs and the tar (untimed for the ratio)"
	prepare "$tree"
	timed "$cma" build --type replicate --id 1 --site bench --from "$tree" -o "$run/rep.pack"
	t_pack=$T_WALL
	"$cma" build --type commit --id 2 --site bench --target 1 -o "$run/rep-commit.pack"
	prepare "$tree"
	timed tar -cf "$run/tree.tar" -C "$tree" .
	t_tar_c=$T_WALL
	if [ "$TZST" = 1 ]; then
		timed tar --zstd -cf "$run/tree.tar.zst" -C "$tree" .
		t_tzst_c=$T_WALL
	fi

	# The probe: how fast this file system creates files right now (a tar of
	# PROBE_FILES files of the tree, extracted into a fresh directory and
	# synced). Its directories stay until the end: deleting them would slow
	# down what it measures.
	probe_n=0
	(cd "$tree" && find . -type f -print0 | LC_ALL=C sort -z | sed -z -n "1,${PROBE_FILES}p") >"$run/probe.list"
	tar -cf "$run/probe.tar" -C "$tree" --null -T "$run/probe.list"
	untar_sync() { tar -xf "$1" -C "$2" && sync -f "$2"; } # TAR DIR
	probe() {
		probe_n=$((probe_n + 1))
		mkdir "$run/probe.$probe_n"
		sync
		timed untar_sync "$run/probe.tar" "$run/probe.$probe_n"
		P_WALL=$T_WALL
	}
	probe
	probe0=$P_WALL
	probes=("$probe0")
	# settle — after deleting a round: wait SETTLE_MIN s, then probe every
	# 30 s until file creation is within 1.5 x the fastest probe seen, at
	# most SETTLE s in all. Why 420 s: ext4 without a journal does not reuse
	# an inode within 60 s of its deletion, 360 s while its inode-table block
	# is dirty (fs/ext4/ialloc.c, recently_deleted) — and creating files
	# dirties those blocks, so each new inode is found only after a scan past
	# the recently deleted ones (perf: 40 % of cm-apply's time in
	# recently_deleted 4 minutes after a deletion, none after 7).
	settle() {
		local waited=0 best
		sleep "$SETTLE_MIN"
		waited=$SETTLE_MIN
		while :; do
			probe
			best=$(printf '%s\n' "${probes[@]}" "$P_WALL" | sort -g | awk 'NR == 1')
			note "settle: ${waited} s, probe $P_WALL s (fastest so far: $best s)"
			if awk -v p="$P_WALL" -v b="$best" 'BEGIN { exit !(p <= 1.5 * b) }'; then
				break
			fi
			if [ "$waited" -ge "$SETTLE" ]; then
				note "settle: still slow after $SETTLE s; going on"
				break
			fi
			sleep 30
			waited=$((waited + 30))
		done
		probes+=("$P_WALL")
		settled+=("$waited")
	}

	# One tool into a fresh directory under round dir D.
	rep_cm() {
		mkdir "$d/site"
		prepare "$run/rep.pack" "$run/rep-commit.pack"
		apply "$d/site" "$run/rep.pack" "$d/apply.json" staged
		cm_a+=("$T_WALL")
		apply "$d/site" "$run/rep-commit.pack" "$d/commit.json" switched
		cm_c+=("$T_WALL")
		timed spare_wait "$d/site"
		cm_w+=("$T_WALL")
		timed sync -f "$d/site"
		cm_s+=("$T_WALL")
		cm_t+=("$(tsum "${cm_a[-1]}" "${cm_c[-1]}")")
		note "cm: run ${cm_a[-1]} s, then sync -f ${cm_s[-1]} s"
	}
	rep_rsync() {
		mkdir "$d/rsync"
		prepare "$tree"
		timed rsync -a "$tree/" "$d/rsync/"
		rs_a+=("$T_WALL")
		timed sync -f "$d/rsync"
		rs_s+=("$T_WALL")
		rs_t+=("$(tsum "${rs_a[-1]}" "${rs_s[-1]}")")
		note "rsync: run ${rs_a[-1]} s, then sync -f ${rs_s[-1]} s"
	}
	rep_tar() {
		mkdir "$d/tar"
		prepare "$run/tree.tar"
		timed tar -xf "$run/tree.tar" -C "$d/tar"
		tx_a+=("$T_WALL")
		timed sync -f "$d/tar"
		tx_s+=("$T_WALL")
		tx_t+=("$(tsum "${tx_a[-1]}" "${tx_s[-1]}")")
		note "tar: run ${tx_a[-1]} s, then sync -f ${tx_s[-1]} s"
	}
	rep_tzst() {
		mkdir "$d/tzst"
		prepare "$run/tree.tar.zst"
		timed tar --zstd -xf "$run/tree.tar.zst" -C "$d/tzst"
		tz_a+=("$T_WALL")
		timed sync -f "$d/tzst"
		tz_s+=("$T_WALL")
		tz_t+=("$(tsum "${tz_a[-1]}" "${tz_s[-1]}")")
		note "tzst: run ${tz_a[-1]} s, then sync -f ${tz_s[-1]} s"
	}

	tools=(cm rsync tar)
	[ "$TZST" != 1 ] || tools+=(tzst)
	cm_a=() cm_c=() cm_w=() cm_s=() cm_t=() rs_a=() rs_s=() rs_t=() tx_a=() tx_s=() tx_t=() tz_a=() tz_s=() tz_t=()
	settled=() orders=() loads=()
	for ((r = 1; r <= REP_RUNS; r++)); do
		if [ "$r" -gt 1 ]; then
			note "replicate: deleting round $((r - 1))'s trees, then waiting for the file system to settle"
			rm -rf "$run/rep.$((r - 1))"
			sync
			settle
		fi
		d=$run/rep.$r
		mkdir "$d"
		# A different order each round: none always goes first.
		order=("${tools[@]:$(((r - 1) % ${#tools[@]}))}" "${tools[@]:0:$(((r - 1) % ${#tools[@]}))}")
		orders+=("${order[*]}")
		quiet
		loads+=("$LOAD")
		note "replicate round $r/$REP_RUNS: load $LOAD"
		for t in "${order[@]}"; do
			note "replicate round $r/$REP_RUNS: $t"
			"rep_$t"
		done
		note "replicate round $r/$REP_RUNS: checking the results (untimed)"
		same_tree "$tree" "$d/site/live/" || die "cm-apply's live tree differs from the source"
		same_tree "$tree" "$d/rsync" || die "rsync's copy differs from the source"
		same_tree "$tree" "$d/tar" || die "tar's copy differs from the source"
		[ "$TZST" != 1 ] || same_tree "$tree" "$d/tzst" || die "tar --zstd's copy differs from the source"
	done

	m_cma=$(median "${cm_a[@]}") m_cmc=$(median "${cm_c[@]}") m_cms=$(median "${cm_s[@]}") m_cmt=$(median "${cm_t[@]}")
	m_rsa=$(median "${rs_a[@]}") m_rss=$(median "${rs_s[@]}") m_rst=$(median "${rs_t[@]}")
	m_txa=$(median "${tx_a[@]}") m_txs=$(median "${tx_s[@]}") m_txt=$(median "${tx_t[@]}")
	if [ "$REP_RUNS" = 1 ]; then how="1 run each"; else how="median of $REP_RUNS runs"; fi
	ord=$(printf '%s; ' "${orders[@]}")
	say "replicate: $(group "$n_rep") files in $(group "$REP_DIRS") dirs, $(group "$b_rep") B (synthetic, 40 % random bytes per file); $how, each into a fresh directory"
	say "replicate pack: $(group "$(fsize "$run/rep.pack")") B, built in $t_pack s (cm-assign build --type replicate, untimed for the ratio); tar: $(group "$(fsize "$run/tree.tar")") B, made in $t_tar_c s"
	[ "$TZST" != 1 ] || say "tar.zst: $(group "$(fsize "$run/tree.tar.zst")") B, made in $t_tzst_c s (tar --zstd, zstd's default level)"
	say "order of the tools in each round: ${ord%; }; 1-minute load at the start of each round: ${loads[*]}"
	say "each run (total s, in round order): cm-apply ${cm_t[*]}; rsync ${rs_t[*]}; tar ${tx_t[*]}${tz_t[0]+; tar --zstd ${tz_t[*]}}"
	say "file-creation probe ($(group "$PROBE_FILES") files of the tree, tar -x + sync -f; seconds): ${probes[*]}${settled[0]+ (before round 1, then after each deletion and a wait of ${settled[*]} s)}"
	row "replicate (times in s)" "run" "+sync -f" "total"
	row "cm-apply replicate (staged and synced inside)" "$m_cma" "-" "-"
	row "cm-apply commit" "$m_cmc" "-" "-"
	row "cm-apply replicate + commit" "$m_cmt" "($m_cms)" "$m_cmt"
	row "  then the spare, in the background (untimed)" "$(median "${cm_w[@]}")" "-" "-"
	row "rsync -a SRC/ DST/" "$m_rsa" "$m_rss" "$m_rst"
	row "tar -xf TREE.tar" "$m_txa" "$m_txs" "$m_txt"
	if [ "$TZST" = 1 ]; then
		row "tar --zstd -xf TREE.tar.zst (not in the ratio)" "$(median "${tz_a[@]}")" "$(median "${tz_s[@]}")" "$(median "${tz_t[@]}")"
	fi
	say "(run: until the command exits; +sync -f: a sync -f of the destination right after; total: run + sync for the peers, apply + commit for cm-apply, whose own sync is inside — the sync -f after it, in brackets, is not added. Each column is its own median)"
	best=$(fastest "rsync=$m_rst" "tar=$m_txt")
	rat "ratio replicate cm-apply+commit / faster peer incl. sync ($best)" "$(ratio "$m_cmt" "$(tmin "$m_rst" "$m_txt")")" 1.2
	best=$(fastest "rsync=$m_rsa" "tar=$m_txa")
	rat "ratio replicate cm-apply+commit / faster peer, no sync ($best)" "$(ratio "$m_cmt" "$(tmin "$m_rsa" "$m_txa")")" 1.2
	rat "ratio replicate cm-apply alone / faster peer incl. sync" "$(ratio "$m_cma" "$(tmin "$m_rst" "$m_txt")")"
fi

# ------------------------------------------------------------------ publish

if [ "$SKIP_PUB" != 1 ]; then
	p=$run/pub
	mkdir "$p"
	npm_corpus "$cache" "$PKG" "$OLD" "$NEW" "$p"
	old=$p/old new=$p/new

	# What changed, by content: tar carries those files.
	changed=() n_del=0 b_ch=0
	while IFS= read -r -d '' f; do
		if [ -f "$old/$f" ] && [ ! -L "$old/$f" ] && cmp -s "$old/$f" "$new/$f"; then
			continue
		fi
		changed+=("$f")
		b_ch=$((b_ch + $(fsize "$new/$f")))
	done < <(cd "$new" && find . -type f -printf '%P\0' | LC_ALL=C sort -z)
	while IFS= read -r -d '' f; do
		[ -e "$new/$f" ] || [ -L "$new/$f" ] || n_del=$((n_del + 1))
	done < <(cd "$old" && find . -type f -printf '%P\0')
	[ "$n_del" = 0 ] || note "warning: $n_del files deleted in $NEW: tar -x of the changed files leaves them"
	printf '%s\0' "${changed[@]}" >"$p/changed.list"
	tar -cf "$p/changed.tar" -C "$new" --null -T "$p/changed.list"
	n_new=$(find "$new" -type f | wc -l)
	b_new=$(find "$new" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

	"$cmd" --no-manifest "$old" "$new" -o "$p/table"
	"$cma" build --type replicate --id 1 --site bench --from "$old" -o "$p/rep.pack"
	"$cma" build --type commit --id 2 --site bench --target 1 -o "$p/commit1.pack"
	"$cma" build --type publish --id 3 --seq 3 --base 1 --site bench "$p/table" -o "$p/pub.pack"
	"$cma" build --type commit --id 4 --site bench --target 3 -o "$p/commit3.pack"

	note "publish: $PUB_RUNS sites at $OLD and $((3 * PUB_RUNS)) copies of old (untimed)"
	for ((r = 1; r <= PUB_RUNS; r++)); do
		mkdir "$p/site.$r"
		apply "$p/site.$r" "$p/rep.pack" "$p/r.$r.json" staged
		apply "$p/site.$r" "$p/commit1.pack" "$p/c.$r.json" switched
		spare_wait "$p/site.$r"
		mkdir "$p/nosp.$r"
		apply "$p/nosp.$r" "$p/rep.pack" "$p/nr.$r.json" staged --no-spare
		apply "$p/nosp.$r" "$p/commit1.pack" "$p/nc.$r.json" switched --no-spare
		cp -a "$old" "$p/rsync.$r"
		cp -a "$old" "$p/rsyncc.$r"
		cp -a "$old" "$p/tar.$r"
		mkdir "$p/atomic.$r"
		cp -a "$old" "$p/atomic.$r/base"
		ln -s base "$p/atomic.$r/live"
	done

	staged_tar() { # LIVE STAGE TAR SITE
		cp -al "$1" "$2"
		tar -xf "$3" -C "$2"
		sync -f "$2"
		ln -s "${2##*/}" "$4/.live.tmp"
		mv -T "$4/.live.tmp" "$4/live"
	}
	pc_a=() pc_c=() pc_s=() pc_t=() pc_w=() pn_a=() pn_c=() pn_t=() pr_a=() pr_s=() pr_t=() pk_a=() pk_s=() pk_t=() px_a=() px_s=() px_t=() pl_t=()
	pub_loads=()
	for ((r = 1; r <= PUB_RUNS; r++)); do
		quiet
		pub_loads+=("$LOAD")
		note "publish round $r/$PUB_RUNS"
		prepare "$p/pub.pack" "$p/commit3.pack" "$p/site.$r/live/"
		apply "$p/site.$r" "$p/pub.pack" "$p/p.$r.json" staged
		pc_a+=("$T_WALL")
		apply "$p/site.$r" "$p/commit3.pack" "$p/pc.$r.json" switched
		pc_c+=("$T_WALL")
		timed sync -f "$p/site.$r"
		pc_s+=("$T_WALL")
		pc_t+=("$(tsum "${pc_a[-1]}" "${pc_c[-1]}")")
		timed spare_wait "$p/site.$r"
		pc_w+=("$T_WALL")

		prepare "$p/pub.pack" "$p/commit3.pack" "$p/nosp.$r/live/"
		apply "$p/nosp.$r" "$p/pub.pack" "$p/np.$r.json" staged --no-spare
		pn_a+=("$T_WALL")
		apply "$p/nosp.$r" "$p/commit3.pack" "$p/npc.$r.json" switched --no-spare
		pn_c+=("$T_WALL")
		pn_t+=("$(tsum "${pn_a[-1]}" "${pn_c[-1]}")")

		prepare "$new" "$p/rsync.$r"
		timed rsync -a --delete "$new/" "$p/rsync.$r/"
		pr_a+=("$T_WALL")
		timed sync -f "$p/rsync.$r"
		pr_s+=("$T_WALL")
		pr_t+=("$(tsum "${pr_a[-1]}" "${pr_s[-1]}")")

		prepare "$new" "$p/rsyncc.$r"
		timed rsync -a -c --delete "$new/" "$p/rsyncc.$r/"
		pk_a+=("$T_WALL")
		timed sync -f "$p/rsyncc.$r"
		pk_s+=("$T_WALL")
		pk_t+=("$(tsum "${pk_a[-1]}" "${pk_s[-1]}")")

		prepare "$p/changed.tar" "$p/tar.$r"
		timed tar -xf "$p/changed.tar" -C "$p/tar.$r"
		px_a+=("$T_WALL")
		timed sync -f "$p/tar.$r"
		px_s+=("$T_WALL")
		px_t+=("$(tsum "${px_a[-1]}" "${px_s[-1]}")")

		# The same guarantee as cm-apply's with common tools: a hard-link
		# clone of live, tar -x into it (GNU tar unlinks a file before
		# writing it, so live's files are not touched), sync, a symlink
		# renamed over live.
		a=$p/atomic.$r
		prepare "$p/changed.tar" "$a/base"
		timed staged_tar "$a/base" "$a/stage" "$p/changed.tar" "$a"
		pl_t+=("$T_WALL")

		same_tree "$new" "$p/site.$r/live/" || die "cm-apply's live tree differs from $NEW"
		same_tree "$new" "$p/nosp.$r/live/" || die "cm-apply --no-spare's live tree differs from $NEW"
		same_tree "$new" "$p/atomic.$r/live/" || die "cp -al + tar's tree differs from $NEW"
		same_tree "$old" "$p/atomic.$r/base" || die "cp -al + tar changed the live tree"
		same_tree "$new" "$p/rsync.$r" || die "rsync's copy differs from $NEW"
		same_tree "$new" "$p/rsyncc.$r" || die "rsync -c's copy differs from $NEW"
		same_tree "$new" "$p/tar.$r" || die "tar's copy differs from $NEW"
	done

	m_pca=$(median "${pc_a[@]}") m_pcc=$(median "${pc_c[@]}") m_pcs=$(median "${pc_s[@]}") m_pct=$(median "${pc_t[@]}")
	m_pra=$(median "${pr_a[@]}") m_prs=$(median "${pr_s[@]}") m_prt=$(median "${pr_t[@]}")
	m_pxa=$(median "${px_a[@]}") m_pxs=$(median "${px_s[@]}") m_pxt=$(median "${px_t[@]}")
	pj=$p/p.1.json
	jn() { grep -o "\"$2\":[0-9]*" "$1" | cut -d: -f2; }
	say "publish: $PKG $OLD -> $NEW (npm pack), every mtime reset; new tree $(group "$n_new") files, $(group "$b_new") B; $(group "${#changed[@]}") files changed or added by content ($(group "$b_ch") B), $n_del deleted; median of $PUB_RUNS runs"
	say "publish pack: $(group "$(fsize "$p/pub.pack")") B, $(jn "$pj" commands) commands, $(group "$(jn "$pj" bytes_written)") B written; changed-files tar: $(group "$(fsize "$p/changed.tar")") B; sites and copies of old made beforehand (untimed)"
	say "each run (total s): cm-apply ${pc_t[*]}; rsync ${pr_t[*]}; tar ${px_t[*]}; 1-minute load at the start of each: ${pub_loads[*]}"
	row "publish (times in s)" "run" "+sync -f" "total"
	row "cm-apply publish (staged and synced inside)" "$m_pca" "-" "-"
	row "cm-apply commit" "$m_pcc" "-" "-"
	row "cm-apply publish + commit" "$m_pct" "($m_pcs)" "$m_pct"
	row "  then the next spare, in the background (untimed)" "$(median "${pc_w[@]}")" "-" "-"
	row "cm-apply --no-spare publish" "$(median "${pn_a[@]}")" "-" "-"
	row "cm-apply --no-spare publish + commit" "$(median "${pn_t[@]}")" "-" "$(median "${pn_t[@]}")"
	row "rsync -a --delete NEW/ COPY/" "$m_pra" "$m_prs" "$m_prt"
	row "tar -xf CHANGED.tar -C COPY" "$m_pxa" "$m_pxs" "$m_pxt"
	row "rsync -a -c --delete (not in the ratio)" "$(median "${pk_a[@]}")" "$(median "${pk_s[@]}")" "$(median "${pk_t[@]}")"
	row "cp -al LIVE STAGE + tar -x + sync + switch (*)" "-" "-" "$(median "${pl_t[@]}")"
	say "(cm-apply: the site's spare, a hard-link copy of live made in the background after the switch to $OLD, becomes the staging tree; with --no-spare, staging starts as a hard-link clone of live. rsync -a rewrites all $(group "$n_new") files: every mtime differs; tar writes only the changed ones. (*) not in the ratio: cm-apply's way with common tools — a hard-link clone of live, tar -x of the changed files into it, sync -f, a symlink renamed over live)"
	best=$(fastest "rsync=$m_prt" "tar=$m_pxt")
	rat "ratio publish cm-apply+commit / faster peer incl. sync ($best)" "$(ratio "$m_pct" "$(tmin "$m_prt" "$m_pxt")")" 1.2
	best=$(fastest "rsync=$m_pra" "tar=$m_pxa")
	rat "ratio publish cm-apply+commit / faster peer, no sync ($best)" "$(ratio "$m_pct" "$(tmin "$m_pra" "$m_pxa")")" 1.2
	rat "ratio publish cm-apply --no-spare / faster peer incl. sync" "$(ratio "$(median "${pn_t[@]}")" "$(tmin "$m_prt" "$m_pxt")")" 1.2
	rat "ratio publish cm-apply+commit / rsync -a incl. sync" "$(ratio "$m_pct" "$m_prt")"
	rat "ratio publish cm-apply+commit / cp -al + tar -x + sync + switch" "$(ratio "$m_pct" "$(median "${pl_t[@]}")")"
fi
