#!/usr/bin/env bash
# bench/assign.sh — cm-assign's packs side by side with tar --zstd and rsync's
# batch.
#
# Usage: CM_BIN=/path/to/build bench/assign.sh
#
# 1. Corpus: the same as bench/delta.sh — `npm pack` of PKG at OLD and NEW
#    (cached in bench/work/cache), unpacked as old/ and new/, every mtime
#    reset as a rebuild would. cm-delta makes the delta table (untimed here;
#    bench/delta.sh measures it).
# 2. Publish: `cm-assign build --type publish` of that table (pack size and
#    build time) against
#    a. `tar --zstd` at level 19 of the same data cm-delta emitted: every
#       data item of the table (file contents and deltas) as a file named by
#       its path;
#    b. `tar --zstd` at level 19 of the table file itself;
#    c. `rsync -a -c --no-W --delete --only-write-batch` for the same update
#       (the batch, and the batch as one zstd -19 stream).
#    The issue's targets: pack <= 1.0 x (a) in size, build time <= 1.2 x (a)'s
#    time, and the whole update as it travels (the pack) <= 0.05 x (c).
# 3. Replicate: `cm-assign build --type replicate --from new/` against
#    `tar --zstd` of new/ at level 19 (size, time) and at zstd's default
#    level (time).
#
# Every result is a plain line prefixed with the date, ready for
# bench/RESULTS.md. Times are medians of RUNS runs, warm page cache, on a
# shared machine: printed, never asserted. The exit status says only whether
# the benchmark ran.
#
# Environment: CM_BIN (dir holding cm-delta and cm-assign; default
# ../build), PKG, OLD, NEW (as bench/delta.sh), RUNS (3), LEVEL (cm-assign
# --level; default: cm-assign's own choice), KEEP=1 to keep the run directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.bash
. "$here/lib.bash"

CM_BIN=${CM_BIN:-$here/../build}
cmd=$CM_BIN/cm-delta
cma=$CM_BIN/cm-assign
PKG=${PKG:-@mui/material}
OLD=${OLD:-5.15.14}
NEW=${NEW:-5.15.15}
RUNS=${RUNS:-3}
LEVEL=${LEVEL:-}
KEEP=${KEEP:-0}

for p in "$cmd" "$cma"; do
	[ -x "$p" ] || die "$p not found (build with make, or point CM_BIN at the build dir)"
done
need rsync zstd tar python3 cmp
# Reproducible packs: the same bytes on every run.
export SOURCE_DATE_EPOCH=1700086400

work=$here/work
cache=$work/cache
mkdir -p "$cache"
# A fresh, uniquely named run dir (see bench/delta.sh: never delete a big
# tree just before a timed run). Everything in it goes at the end.
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

# jget FILE KEY — a value from a JSON object in FILE; KEY is "a" or "a.b".
jget() {
	python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k]
print(v)' "$1" "$2"
}

# extract TABLE DIR — every data item of a delta table (the content of a
# file entry, the delta of a patch entry) as DIR/PATH; prints "ITEMS BYTES".
# Format: man/cm-delta.5. Checks the data count against the trailer, not the
# digest (cm-delta wrote the table a moment ago).
extract() {
	python3 - "$1" "$2" <<'EOF'
import os, sys

def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7f) << s
        s += 7
        if not c & 0x80:
            return v, i

table, out = sys.argv[1], sys.argv[2]
b = open(table, 'rb').read()
if b[:8] != b'CMDELTA\n':
    sys.exit('%s: not a delta table' % table)
ver, i = varint(b, 8)
if ver != 1:
    sys.exit('%s: delta table version %d' % (table, ver))
cur, items, nbytes, done = None, 0, 0, False
while i < len(b):
    kind = b[i:i + 1]
    ln, i = varint(b, i + 1)
    p = b[i:i + ln]
    i += ln
    if kind in (b'E', b'T') and cur:
        cur.close()
        cur = None
    if kind == b'E' and p[0] in (2, 3):  # file, patch: data frames follow
        pl, j = varint(p, 1)
        dst = os.path.join(out, p[j:j + pl].decode('utf-8', 'surrogateescape'))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        cur = open(dst, 'xb')
        items += 1
    elif kind == b'D':
        cur.write(p)
        nbytes += len(p)
    elif kind == b'T':
        _, j = varint(p, 0)
        want, j = varint(p, j)
        if want != nbytes:
            sys.exit('%s: trailer says %d data bytes, found %d' % (table, want, nbytes))
        done = True
if not done:
    sys.exit('%s: no trailer' % table)
print(items, nbytes)
EOF
}

# ---------------------------------------------------------------- corpus

old=$run/old
new=$run/new
oldcopy=$run/old-copy
load0=$(cut -d ' ' -f 1 /proc/loadavg)
npm_corpus "$cache" "$PKG" "$OLD" "$NEW" "$run"
# rsync's destination (--only-write-batch reads it, does not change it).
cp -a "$old" "$oldcopy"

mkdir "$run/t"
table=$run/t/table
"$cmd" --stat --json --no-manifest "$old" "$new" -o "$table" >"$run/delta.json"
items=$run/items
mkdir "$items"
x=$(extract "$table" "$items")
read -r n_items b_items <<<"$x"
# Fixed times: tar stores them, and the archive should not vary by run.
find "$items" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Does this tar's zstd honour ZSTD_CLEVEL? (GNU tar runs the zstd program,
# which reads it.) If not, pipe tar into zstd -19 instead.
ZSTD_CLEVEL=19 tar --zstd -cf "$run/probe1" -C "$new" .
tar -cf - -C "$new" . | zstd -19 -q -c >"$run/probe2"
if cmp -s "$run/probe1" "$run/probe2"; then
	tz_how="ZSTD_CLEVEL=19 tar --zstd"
	tar19() { ZSTD_CLEVEL=19 tar --zstd -cf "$1" -C "$2" "$3"; } # OUT DIR WHAT
else
	tz_how="tar | zstd -19 (this tar ignores ZSTD_CLEVEL)"
	tar19() { tar -cf - -C "$2" "$3" | zstd -19 -q -c >"$1"; }
fi
# zstd's own default level: no ZSTD_CLEVEL in the environment.
tar3() { env -u ZSTD_CLEVEL tar --zstd -cf "$1" -C "$2" "$3"; }

lvl=()
[ -z "$LEVEL" ] || lvl=(--level "$LEVEL")
publish() { # OUT [TABLE|-]
	"$cma" build --type publish --id 2 --site bench ${lvl[@]+"${lvl[@]}"} "${2:-$table}" -o "$1"
}
pipeline() { # OUT — the whole update from the two trees, as a job script runs it
	"$cmd" --no-manifest "$old" "$new" | publish "$1" -
}
replicate() { # OUT
	"$cma" build --type replicate --id 1 --site bench ${lvl[@]+"${lvl[@]}"} --from "$new" -o "$1"
}
batch() { # OUT
	rsync -a -c --no-W --delete --only-write-batch="$1" "$new/" "$oldcopy/"
}

note "warming the page cache"
publish "$run/warm.pack"
tar19 "$run/warm.tzst" "$items" .
batch "$run/warm.batch"
tar -cf - -C "$new" . >/dev/null

pb_t=() ti_t=() tt_t=() rs_t=() pl_t=() rp_t=() r19_t=() r3_t=()
for ((r = 1; r <= RUNS; r++)); do
	note "round $r/$RUNS"
	timed publish "$run/pack.$r"
	pb_t+=("$T_WALL")
	timed tar19 "$run/items.$r.tar.zst" "$items" .
	ti_t+=("$T_WALL")
	timed tar19 "$run/table.$r.tar.zst" "$run/t" table
	tt_t+=("$T_WALL")
	timed batch "$run/batch.$r"
	rs_t+=("$T_WALL")
	timed pipeline "$run/pipe.$r"
	pl_t+=("$T_WALL")
	timed replicate "$run/rep.$r"
	rp_t+=("$T_WALL")
	timed tar19 "$run/new19.$r.tar.zst" "$new" .
	r19_t+=("$T_WALL")
	timed tar3 "$run/new3.$r.tar.zst" "$new" .
	r3_t+=("$T_WALL")
done

pack=$run/pack.1
rep=$run/rep.1
same=identical
for ((r = 1; r <= RUNS; r++)); do
	for f in pack pipe rep; do
		cmp -s "$run/$f.1" "$run/$f.$r" || same="NOT identical"
	done
done
cmp -s "$pack" "$run/pipe.1" || same="NOT identical"
"$cma" verify "$pack" >/dev/null || die "cm-assign verify fails on the publish pack"
"$cma" verify "$rep" >/dev/null || die "cm-assign verify fails on the replicate pack"
diff -rq "$old" "$oldcopy" >/dev/null || die "rsync --only-write-batch changed its destination"
# (awk 'NR == 1', not head: head would close the pipe early, and under
# pipefail the writer's SIGPIPE ends the script.)
"$cma" show --json "$pack" | awk 'NR == 1' >"$run/pack.json"
"$cma" show --json "$rep" | awk 'NR == 1' >"$run/rep.json"

s_pack=$(fsize "$pack")
s_items=$(fsize "$run/items.1.tar.zst")
s_table=$(fsize "$table")
s_ttz=$(fsize "$run/table.1.tar.zst")
s_batch=$(fsize "$run/batch.1")
s_bz=$(zsize "$run/batch.1")
s_rep=$(fsize "$rep")
s_r19=$(fsize "$run/new19.1.tar.zst")
s_r3=$(fsize "$run/new3.1.tar.zst")
t_pb=$(median "${pb_t[@]}") t_ti=$(median "${ti_t[@]}") t_tt=$(median "${tt_t[@]}")
t_rs=$(median "${rs_t[@]}") t_pl=$(median "${pl_t[@]}")
t_rp=$(median "${rp_t[@]}") t_r19=$(median "${r19_t[@]}") t_r3=$(median "${r3_t[@]}")

# members FILE — "name stored/plain" for each member of a pack's show --json
# header, and the bytes outside the members (header, framing, trailer).
members() {
	python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))
ms = h["members"]
print("; ".join("%s %s/%s%s" % (m["name"], format(m["stored_bytes"], ","), format(m["plain_bytes"], ","),
                                " zstd" if m["zstd"] else "") for m in ms)
      + "; outside the members %s" % format(int(sys.argv[2]) - sum(m["stored_bytes"] for m in ms), ","))
' "$1" "$2"
}

row() { # NAME BYTES TIME
	say "$(printf '%-46s %11s %8s' "$@")"
}
rat() { ratio_line 48 "$@"; } # LABEL VALUE [LIMIT]
tarv=$(tar --version | awk 'NR == 1 { print $NF }')
rsv=$(rsync --version | awk 'NR == 1 { print $3 }')
zsv=$(zstd --version | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) { sub(",", "", $i); print $i; exit } }')
dj=$run/delta.json

say "== bench/assign.sh: cm-assign $(ver "$cma"), cm-delta $(ver "$cmd"), GNU tar $tarv, zstd $zsv, rsync $rsv; $(nproc) cores, load $load0 at start; median of $RUNS runs, warm page cache; SOURCE_DATE_EPOCH set, cm-assign --level ${LEVEL:-default}"
say "corpus: $PKG $OLD -> $NEW (npm pack), every mtime reset; new tree $(group "$(jget "$dj" new_tree_files)") files, $(group "$(jget "$dj" new_tree_bytes)") B"
say "cm-delta table: $(jget "$dj" entries) entries ($(jget "$dj" files.changed) changed, $(jget "$dj" files.added) added, $(jget "$dj" files.deleted) deleted; $(jget "$dj" sent.delta) delta, $(jget "$dj" sent.copy) copy, $(jget "$dj" sent.whole) whole); $(group "$(jget "$dj" data_bytes)") B of data in $n_items items; table file $(group "$s_table") B"
say "publish: $(jget "$run/pack.json" commands) commands; packs $same over all runs and from the pipe; cm-assign verify OK"
say "publish pack members (stored/plain B): $(members "$run/pack.json" "$s_pack")"
row "publish" "bytes" "time s"
row "cm-assign build --type publish (the pack)" "$s_pack" "$t_pb"
row "tar.zst -19 of the table's data ($n_items files)" "$s_items" "$t_ti"
row "tar.zst -19 of the table file" "$s_ttz" "$t_tt"
row "rsync -c --only-write-batch (the batch)" "$s_batch" "$t_rs"
row "rsync batch, zstd -19" "$s_bz" "-"
row "cm-delta | cm-assign build (whole update)" "$s_pack" "$t_pl"
say "(tar.zst -19: $tz_how, archive of a directory; the data items are $(group "$b_items") B: patch deltas and new files' contents, named by their paths)"
q=$(ratio "$s_pack" "$s_items")
rat "ratio pack / tar.zst(data)" "$q" 1.0
q=$(ratio "$t_pb" "$t_ti")
rat "ratio pack build time / tar.zst(data) time" "$q" 1.2
q=$(ratio "$s_pack" "$s_batch")
rat "ratio pack (whole update) / rsync batch" "$q" 0.05
rat "ratio pack / tar.zst(table)" "$(ratio "$s_pack" "$s_ttz")"
rat "ratio pack / rsync batch zstd" "$(ratio "$s_pack" "$s_bz")"
rat "ratio cm-delta|cm-assign time / rsync time" "$(ratio "$t_pl" "$t_rs")"

say "replicate: $(jget "$run/rep.json" commands) commands; data $(group "$(jget "$run/rep.json" data_bytes)") B"
say "replicate pack members (stored/plain B): $(members "$run/rep.json" "$s_rep")"
row "replicate (new/ whole)" "bytes" "time s"
row "cm-assign build --type replicate --from new/" "$s_rep" "$t_rp"
row "tar.zst -19 of new/" "$s_r19" "$t_r19"
row "tar --zstd of new/ (zstd's default level)" "$s_r3" "$t_r3"
rat "ratio replicate pack / tar.zst -19" "$(ratio "$s_rep" "$s_r19")"
rat "ratio replicate time / tar.zst -19 time" "$(ratio "$t_rp" "$t_r19")"
rat "ratio replicate time / tar --zstd time" "$(ratio "$t_rp" "$t_r3")"
