#!/usr/bin/env bash
# bench/delta.sh — cm-delta side by side with rsync, rdiff and xdelta3.
#
# Usage: CM_BIN=/path/to/build bench/delta.sh
#
# 1. Corpus: `npm pack` of two nearby releases of a real package with many
#    files (PKG, OLD, NEW; the .tgz files are cached in bench/work/cache),
#    unpacked as old/ and new/, every mtime reset as a rebuild would (old and
#    new get different times, so the quick check matches nothing).
# 2. On that pair: cm-delta (table data bytes, table size, table as one zstd
#    -19 stream, wall time, peak RSS; first run without a hash cache, then
#    with it warm) against `rsync -a -c --no-W --delete --only-write-batch`,
#    `rdiff` per changed file and `xdelta3 -e -9` per changed file.
# 3. Scan: an unchanged tree of SCAN_DIRS x SCAN_FILES files (100,000 by
#    default; built once, cached) — `cm-delta -n` against `rsync -an --delete`.
# 4. Block-size sweep of cm-delta --block-size on the corpus.
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md. Times are medians of RUNS runs, warm page cache, on a
# shared machine: printed, never asserted. The exit status says only whether
# the benchmark ran.
#
# Environment: CM_BIN (dir holding cm-delta; default ../build), PKG, OLD, NEW,
# RUNS (3), BLOCK_SIZES, SCAN_DIRS (1000), SCAN_FILES (100), KEEP=1 to keep
# the run directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"

CM_BIN=${CM_BIN:-$here/../build}
cm=$CM_BIN/cm-delta
PKG=${PKG:-@mui/material}
OLD=${OLD:-5.15.14}
NEW=${NEW:-5.15.15}
RUNS=${RUNS:-3}
BLOCK_SIZES=${BLOCK_SIZES:-16 32 64 128 256 512 1024 2048}
SCAN_DIRS=${SCAN_DIRS:-1000}
SCAN_FILES=${SCAN_FILES:-100}
KEEP=${KEEP:-0}

[ -x "$cm" ] || die "$cm not found (build with make, or point CM_BIN at the build dir)"
need rsync rdiff xdelta3 zstd npm tar cmp /usr/bin/time

work=$here/work
cache=$work/cache
mkdir -p "$cache"
# A fresh, uniquely named run dir: never delete a big tree just before a
# timed run (on this ext4, creating many files right after deleting many is
# several times slower for minutes). Everything in it goes at the end.
run=$(mktemp -d "$work/run.XXXXXX")
cleanup() {
	if [ "$KEEP" = 1 ]; then
		note "kept $run"
	else
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'note "failed at line $LINENO"' ERR

# json_num FILE KEY — a number from cm-delta's one-line JSON summary; KEY is
# a top-level field or "outer.inner" (one level).
json_num() {
	local file=$1 key=$2 v
	if [[ $key == *.* ]]; then
		v=$(grep -o "\"${key%%.*}\":{[^}]*}" "$file" | grep -o "\"${key#*.}\":[0-9]*" | cut -d: -f2)
	else
		v=$(grep -o "\"$key\":[0-9]*" "$file" | cut -d: -f2)
	fi
	[ -n "$v" ] || die "no $key in $file: $(cat "$file")"
	printf '%s' "$v"
}

# ---------------------------------------------------------------- corpus

# fetch VERSION — the cached npm tarball of $PKG@VERSION (downloads once).
fetch() {
	local ver=$1 name tgz tmp f
	name=${PKG#@}
	name=${name//\//-}
	tgz=$cache/$name-$ver.tgz
	if [ ! -s "$tgz" ]; then
		note "npm pack $PKG@$ver"
		tmp=$(mktemp -d "$cache/pack.XXXXXX")
		f=$(cd "$tmp" && npm pack --silent "$PKG@$ver" | tail -n 1)
		[ -s "$tmp/$f" ] || die "npm pack $PKG@$ver produced no tarball"
		mv "$tmp/$f" "$tgz"
		rmdir "$tmp"
	fi
	printf '%s' "$tgz"
}

old=$run/old
new=$run/new
oldcopy=$run/old-copy
load0=$(cut -d ' ' -f 1 /proc/loadavg)
tgz_old=$(fetch "$OLD")
tgz_new=$(fetch "$NEW")
mkdir "$old" "$new"
tar -xzf "$tgz_old" -C "$old" --strip-components=1
tar -xzf "$tgz_new" -C "$new" --strip-components=1
# Every file rebuilt: one time for the old tree, another for the new one.
t_old=1700000000
find "$old" -exec touch -h -d "@$t_old" {} +
find "$new" -exec touch -h -d "@$((t_old + 86400))" {} +
# rsync's destination (--only-write-batch reads it, does not change it).
cp -a "$old" "$oldcopy"

# What changed, by content: the peers that work per file need the list.
changed=() added=()
n_new=0 b_new=0 n_deleted=0
while IFS= read -r -d '' f; do
	n_new=$((n_new + 1))
	b_new=$((b_new + $(fsize "$new/$f")))
	if [ -f "$old/$f" ] && [ ! -L "$old/$f" ]; then
		cmp -s "$old/$f" "$new/$f" || changed+=("$f")
	else
		added+=("$f")
	fi
done < <(cd "$new" && find . -type f -printf '%P\0' | LC_ALL=C sort -z)
while IFS= read -r -d '' f; do
	[ -e "$new/$f" ] || [ -L "$new/$f" ] || n_deleted=$((n_deleted + 1))
done < <(cd "$old" && find . -type f -printf '%P\0')
b_added=0
for f in ${added[@]+"${added[@]}"}; do b_added=$((b_added + $(fsize "$new/$f"))); done
b_changed=0
for f in ${changed[@]+"${changed[@]}"}; do b_changed=$((b_changed + $(fsize "$new/$f"))); done

# --------------------------------------------------------- the side by side

rdiff_all() { # OUTDIR [BLOCK] (rdiff's default: librsync's recommended sqrt(size))
	local out=$1 bs=${2:-0} i=0 f
	mkdir "$out"
	for f in ${changed[@]+"${changed[@]}"}; do
		i=$((i + 1))
		rdiff -b "$bs" signature "$old/$f" "$out/$i.sig"
		rdiff delta "$out/$i.sig" "$new/$f" "$out/$i.delta"
	done
}

xdelta_all() { # OUTDIR
	local out=$1 i=0 f
	mkdir "$out"
	for f in ${changed[@]+"${changed[@]}"}; do
		i=$((i + 1))
		xdelta3 -e -9 -f -s "$old/$f" "$new/$f" "$out/$i.vcdiff"
	done
}

# sum_ext DIR EXT — total bytes of DIR/*.EXT.
sum_ext() {
	find "$1" -name "*.$2" -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

# stream_ext DIR EXT — DIR/1.EXT, DIR/2.EXT ... then every added file whole,
# concatenated, as one zstd -19 stream: its size.
stream_ext() {
	local dir=$1 ext=$2 i f
	{
		for ((i = 1; i <= ${#changed[@]}; i++)); do cat "$dir/$i.$ext"; done
		for f in ${added[@]+"${added[@]}"}; do cat "$new/$f"; done
	} | zstd -19 -q -c | wc -c
}

note "warming the page cache"
"$cm" -n --no-manifest "$old" "$new" >/dev/null
rsync -a -c --no-W --delete --only-write-batch="$run/warm.batch" "$new/" "$oldcopy/"

cold_t=() cold_rss=() warm_t=() warm_rss=() rs_t=() rs_rss=() rd_t=() r64_t=() xd_t=()
# The warm hash cache: one untimed run fills it.
"$cm" --manifest "$run/m.warm" "$old" "$new" -o "$run/table.prime"
for ((r = 1; r <= RUNS; r++)); do
	note "corpus round $r/$RUNS"
	# First run: no hash cache yet (a fresh manifest path every round).
	timed_rss "$cm" --stat --json --manifest "$run/m.cold.$r" "$old" "$new" -o "$run/table.cold.$r" \
		>"$run/stat.cold.$r"
	cold_t+=("$T_WALL") cold_rss+=("$T_RSS")
	timed_rss "$cm" --stat --json --manifest "$run/m.warm" "$old" "$new" -o "$run/table.warm.$r" \
		>"$run/stat.warm.$r"
	warm_t+=("$T_WALL") warm_rss+=("$T_RSS")
	timed_rss rsync -a -c --no-W --delete --only-write-batch="$run/batch.$r" "$new/" "$oldcopy/"
	rs_t+=("$T_WALL") rs_rss+=("$T_RSS")
	timed rdiff_all "$run/rdiff.$r"
	rd_t+=("$T_WALL")
	timed rdiff_all "$run/rdiff64.$r" 64
	r64_t+=("$T_WALL")
	timed xdelta_all "$run/xdelta.$r"
	xd_t+=("$T_WALL")
done

table=$run/table.cold.1
for ((r = 1; r <= RUNS; r++)); do
	if ! cmp -s "$table" "$run/table.cold.$r" || ! cmp -s "$table" "$run/table.warm.$r"; then
		die "cm-delta wrote different tables for the same trees (run $r)"
	fi
done
diff -rq "$old" "$oldcopy" >/dev/null || die "rsync --only-write-batch changed its destination"
st=$run/stat.cold.1
cm_data=$(json_num "$st" data_bytes)
cm_file=$(fsize "$table")
cm_z=$(zsize "$table")
cm_tc=$(median "${cold_t[@]}") cm_tw=$(median "${warm_t[@]}")
rs_file=$(fsize "$run/batch.1")
# rsync's literal (unmatched) data, from an extra untimed run with --stats.
rs_lit=$(rsync -a -c --no-W --delete --stats --only-write-batch="$run/batch.stats" "$new/" "$oldcopy/" |
	grep '^Literal data' | tr -dc 0-9)
rs_z=$(zsize "$run/batch.1")
rs_tm=$(median "${rs_t[@]}")
rd_bytes=$(($(sum_ext "$run/rdiff.1" delta) + b_added))
rd_z=$(stream_ext "$run/rdiff.1" delta)
r64_bytes=$(($(sum_ext "$run/rdiff64.1" delta) + b_added))
r64_z=$(stream_ext "$run/rdiff64.1" delta)
xd_bytes=$(($(sum_ext "$run/xdelta.1" vcdiff) + b_added))
xd_z=$(stream_ext "$run/xdelta.1" vcdiff)
wh_bytes=$((b_changed + b_added))
wh_z=$({
	for f in ${changed[@]+"${changed[@]}"} ${added[@]+"${added[@]}"}; do cat "$new/$f"; done
} | zstd -19 -q -c | wc -c)

row() { # NAME DATA FILE ZSTD TIME RSS
	say "$(printf '%-28s %11s %11s %10s %8s %9s' "$@")"
}
# (awk 'NR == 1', not head: head would close the pipe early, and under
# pipefail the writer's SIGPIPE ends the script.)
cmv=$("$cm" --version 2>/dev/null | awk 'NR == 1 { print $NF }')
rsv=$(rsync --version | awk 'NR == 1 { print $3 }')
rdv=$(rdiff --version 2>&1 | sed -n '1s/.*librsync \([^)]*\)).*/\1/p')
xdv=$(xdelta3 -V 2>&1 | awk 'NR == 1 { sub(",", "", $3); print $3 }')
zsv=$(zstd --version | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) { sub(",", "", $i); print $i; exit } }')
say "== bench/delta.sh: cm-delta $cmv, rsync $rsv, rdiff (librsync $rdv), xdelta3 $xdv, zstd $zsv; $(nproc) cores, load $load0 at start; median of $RUNS runs, warm page cache"
say "corpus: $PKG $OLD -> $NEW (npm pack), every mtime reset; new tree $(group "$n_new") files, $(group "$b_new") B"
say "by content: $(group "${#changed[@]}") changed ($(group "$b_changed") B), $(group "${#added[@]}") added ($(group "$b_added") B), $(group "$n_deleted") deleted"
say "cm-delta: $(json_num "$st" files.changed) changed, $(json_num "$st" files.added) added, $(json_num "$st" files.deleted) deleted; sent $(json_num "$st" sent.delta) as delta, $(json_num "$st" sent.copy) as copy, $(json_num "$st" sent.whole) whole; tables identical over all runs"
row "tool" "data B" "file B" "zstd-19 B" "time s" "RSS KiB"
row "cm-delta (no hash cache)" "$cm_data" "$cm_file" "$cm_z" "$cm_tc" "$(median "${cold_rss[@]}")"
row "cm-delta (hash cache warm)" "$cm_data" "$cm_file" "$cm_z" "$cm_tw" "$(median "${warm_rss[@]}")"
row "rsync -c --only-write-batch" "$rs_lit" "$rs_file" "$rs_z" "$rs_tm" "$(median "${rs_rss[@]}")"
row "rdiff per changed file" "$rd_bytes" "$rd_bytes" "$rd_z" "$(median "${rd_t[@]}")" "-"
row "rdiff -b 64 per changed file" "$r64_bytes" "$r64_bytes" "$r64_z" "$(median "${r64_t[@]}")" "-"
row "xdelta3 -9 per changed file" "$xd_bytes" "$xd_bytes" "$xd_z" "$(median "${xd_t[@]}")" "-"
row "changed+added files whole" "$wh_bytes" "$wh_bytes" "$wh_z" "-" "-"
say "(data B: file data + deltas in cm's table; rsync's literal data (--stats); rdiff/xdelta3 deltas + added files whole. file B: the whole table or batch. zstd-19 B: that file, or the deltas and added files concatenated, as one stream. rdiff/xdelta3 times exclude finding what changed)"
q=$(ratio "$cm_data" "$rs_file")
say "$(printf '%-48s = %s' "ratio cm data / rsync batch" "$q (target <= 0.15: $(verdict "$q" 0.15))")"
say "$(printf '%-48s = %s' "ratio cm table / rsync batch" "$(ratio "$cm_file" "$rs_file")")"
say "$(printf '%-48s = %s' "ratio cm table zstd / rsync batch" "$(ratio "$cm_z" "$rs_file")")"
say "$(printf '%-48s = %s' "ratio cm table zstd / rsync batch zstd" "$(ratio "$cm_z" "$rs_z")")"
say "$(printf '%-48s = %s' "ratio cm data / rdiff per file" "$(ratio "$cm_data" "$rd_bytes")")"
say "$(printf '%-48s = %s' "ratio cm data / xdelta3 per file" "$(ratio "$cm_data" "$xd_bytes")")"

q=$(ratio "$cm_tc" "$rs_tm")
say "$(printf '%-48s = %s' "ratio cm time / rsync time (no hash cache)" "$q (target <= 1.0: $(verdict "$q" 1.0))")"
q=$(ratio "$cm_tw" "$rs_tm")
say "$(printf '%-48s = %s' "ratio cm time / rsync time (hash cache warm)" "$q (target <= 1.0: $(verdict "$q" 1.0))")"

# Where the bytes go: the biggest entries of cm's table next to the peers'
# deltas of the same file (needs jq to read `cm-delta show --json`).
if command -v jq >/dev/null 2>&1; then
	declare -A idx=()
	for ((i = 0; i < ${#changed[@]}; i++)); do idx[${changed[$i]}]=$((i + 1)); done
	say "largest entries of cm's table (bytes; rdiff/xdelta3 only for changed files):"
	say "$(printf '%-44s %9s %-6s %8s %8s %8s %8s' "path" "size" "op" "cm" "rdiff" "rdiff64" "xdelta3")"
	"$cm" show --json "$table" |
		jq -j 'select(.data_bytes > 0) | "\(.data_bytes)\t\(.op)\t\(.size)\t\(.path)\u0000"' |
		sort -z -t "$(printf '\t')" -k1,1nr >"$run/top"
	n=0
	while IFS=$'\t' read -r -d '' db op size path; do
		n=$((n + 1))
		[ "$n" -le "${TOP:-8}" ] || continue
		i=${idx[$path]:-}
		if [ -n "$i" ]; then
			a=$(fsize "$run/rdiff.1/$i.delta") b=$(fsize "$run/rdiff64.1/$i.delta")
			c=$(fsize "$run/xdelta.1/$i.vcdiff")
		else
			a=- b=- c=-
		fi
		say "$(printf '%-44s %9s %-6s %8s %8s %8s %8s' "$path" "$size" "$op" "$db" "$a" "$b" "$c")"
	done <"$run/top"
fi

# ---------------------------------------------------------- block-size sweep

note "block-size sweep: $BLOCK_SIZES"
say "block-size sweep on the corpus (cm-delta --no-manifest --block-size N; median of $RUNS)"
say "$(printf '%-8s %11s %11s %10s %6s %6s %8s %9s' "block" "data B" "table B" "zstd-19 B" "delta" "whole" "time s" "RSS KiB")"
for bs in default $BLOCK_SIZES; do
	opt=()
	[ "$bs" = default ] || opt=(--block-size "$bs")
	ts=() rss=()
	for ((r = 1; r <= RUNS; r++)); do
		timed_rss "$cm" --stat --json --no-manifest ${opt[@]+"${opt[@]}"} "$old" "$new" \
			-o "$run/table.bs.$bs" >"$run/stat.bs.$bs"
		ts+=("$T_WALL") rss+=("$T_RSS")
	done
	s=$run/stat.bs.$bs
	say "$(printf '%-8s %11s %11s %10s %6s %6s %8s %9s' "$bs" "$(json_num "$s" data_bytes)" \
		"$(fsize "$run/table.bs.$bs")" "$(zsize "$run/table.bs.$bs")" "$(json_num "$s" sent.delta)" \
		"$(json_num "$s" sent.whole)" "$(median "${ts[@]}")" "$(median "${rss[@]}")")"
done

# ------------------------------------------------------------------- scan

scan=$cache/scan-${SCAN_DIRS}x$SCAN_FILES
if [ ! -e "$scan.ok" ]; then
	# Built once and kept in the cache: making 2 x 100,000 files each run
	# (and deleting them after) would cost more than the whole benchmark.
	note "building the scan trees ($SCAN_DIRS x $SCAN_FILES files, once)"
	tmp=$(mktemp -d "$cache/scan.XXXXXX")
	mkdir "$tmp/staging"
	for ((d = 0; d < SCAN_DIRS; d++)); do
		printf -v dir '%s/staging/d%04d' "$tmp" "$d"
		mkdir "$dir"
		for ((f = 0; f < SCAN_FILES; f++)); do
			printf '<p>page %d of dir %d</p>\n' "$f" "$d" >"$dir/page$f.html"
		done
	done
	cp -a "$tmp/staging" "$tmp/shadow"
	[ ! -e "$scan" ] || die "$scan exists without $scan.ok: remove it by hand"
	mv "$tmp" "$scan"
	touch "$scan.ok"
fi
note "scan: checking the trees match"
"$cm" -n --json --no-manifest "$scan/shadow" "$scan/staging" >"$run/scan.check"
[ "$(json_num "$run/scan.check" entries)" = 0 ] || die "scan trees differ: $(cat "$run/scan.check")"
[ -z "$(rsync -ani --delete "$scan/staging/" "$scan/shadow/")" ] || die "rsync sees the scan trees differ"
n_scan=$(json_num "$run/scan.check" new_tree_files)

sc_m=() sc_mr=() sc_n=() sc_nr=() sc_r=() sc_rr=()
for ((r = 1; r <= RUNS; r++)); do
	note "scan round $r/$RUNS"
	timed_rss "$cm" -n --manifest "$run/scan.m.$r" "$scan/shadow" "$scan/staging" >/dev/null
	sc_m+=("$T_WALL") sc_mr+=("$T_RSS")
	timed_rss "$cm" -n --no-manifest "$scan/shadow" "$scan/staging" >/dev/null
	sc_n+=("$T_WALL") sc_nr+=("$T_RSS")
	timed_rss rsync -an --delete "$scan/staging/" "$scan/shadow/"
	sc_r+=("$T_WALL") sc_rr+=("$T_RSS")
done
sm=$(median "${sc_m[@]}") sn=$(median "${sc_n[@]}") sr=$(median "${sc_r[@]}")
say "scan of an unchanged tree: $(group "$n_scan") files in $(group "$SCAN_DIRS") dirs, shadow a cp -a copy (median of $RUNS, warm page cache)"
say "$(printf '%-36s %8s %9s' "tool" "time s" "RSS KiB")"
say "$(printf '%-36s %8s %9s' "cm-delta -n (hash cache on)" "$sm" "$(median "${sc_mr[@]}")")"
say "$(printf '%-36s %8s %9s' "cm-delta -n --no-manifest" "$sn" "$(median "${sc_nr[@]}")")"
say "$(printf '%-36s %8s %9s' "rsync -an --delete" "$sr" "$(median "${sc_rr[@]}")")"
q=$(ratio "$sm" "$sr")
say "$(printf '%-48s = %s' "ratio cm scan / rsync scan" "$q (target <= 1.0: $(verdict "$q" 1.0))")"
q=$(ratio "$sn" "$sr")
say "$(printf '%-48s = %s' "ratio cm scan --no-manifest / rsync scan" "$q (target <= 1.0: $(verdict "$q" 1.0))")"
