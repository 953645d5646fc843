# shellcheck shell=bash
# shellcheck disable=SC2034  # T_WALL, T_RSS are results for the caller
# bench/lib.bash — helpers shared by the benchmarks under bench/ (source it).
#
# Conventions: results go to stdout as plain lines prefixed with the date
# (ready to paste into bench/RESULTS.md); progress goes to stderr.
# Times are wall-clock seconds on whatever else this machine is doing:
# they are printed, never asserted.

BENCH_DATE=${BENCH_DATE:-$(date +%F)}

# say LINE... — one result line on stdout, prefixed with the date.
say() { printf '%s %s\n' "$BENCH_DATE" "$*"; }

# note LINE... — progress on stderr.
note() { printf 'bench: %s\n' "$*" >&2; }

# die MSG — a clear error and a non-zero exit.
die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}

# need CMD... — fail early, naming what is missing and how to get it.
need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 ||
			die "$c not found (install the benchmark tools with: scripts/deps.sh bench)"
	done
}

# now_ns — the wall clock in nanoseconds, from bash's $EPOCHREALTIME (in
# microseconds): no program started to read it.
now_ns() {
	local t=${EPOCHREALTIME/[.,]/}
	echo "${t}000"
}

# secs NS — nanoseconds as seconds with 3 decimals.
secs() { awk -v n="$1" 'BEGIN { printf "%.3f", n / 1e9 }'; }

# timed CMD... — run CMD (a program or a shell function), stdout and stderr
# left alone; sets T_WALL (seconds, 3 decimals); returns CMD's status.
timed() {
	local t0 t1 rc=0
	# Read in place, not through $(now_ns): a subshell's fork would be
	# timed too (a date(1) started for each read, as before 2026-11-27
	# 16:30 UTC, added about 1 ms to every time).
	t0=${EPOCHREALTIME/[.,]/}
	# Not `"$@" || rc=$?`: that would turn set -e off inside a function
	# timed, and a failing step in it would go unnoticed.
	"$@"
	rc=$?
	t1=${EPOCHREALTIME/[.,]/}
	T_WALL=$(secs $(((t1 - t0) * 1000)))
	return "$rc"
}

# timed_rss CMD... — run a program under GNU time; sets T_WALL (seconds, 3
# decimals, measured outside GNU time, which only has 10 ms resolution) and
# T_RSS (peak resident set of the process and its waited-for children, KiB).
timed_rss() {
	local t0 t1 f
	f=$(mktemp)
	t0=$(now_ns)
	/usr/bin/time -f %M -o "$f" "$@"
	t1=$(now_ns)
	T_WALL=$(secs $((t1 - t0)))
	T_RSS=$(tail -n 1 "$f")
	rm -f "$f"
}

# median N... — the median of the numbers given (the lower middle for an
# even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# percentile P N... — the P-th percentile (nearest rank) of the numbers
# given: percentile 95 of 20 values is the 19th smallest.
percentile() {
	local p=$1
	shift
	printf '%s\n' "$@" | sort -g | awk -v p="$p" '{ v[NR] = $1 }
		END { r = int((p * NR + 99) / 100); if (r < 1) r = 1; print v[r] }'
}

# ratio A B — A / B with 3 decimals ("n/a" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.3f", a / b }'; }

# verdict VALUE LIMIT — "met" when VALUE <= LIMIT, else "missed".
verdict() { awk -v v="$1" -v l="$2" 'BEGIN { print (v != "n/a" && v <= l) ? "met" : "missed" }'; }

# verdict_min VALUE LIMIT — "met" when VALUE >= LIMIT, else "missed".
verdict_min() { awk -v v="$1" -v l="$2" 'BEGIN { print (v != "n/a" && v >= l) ? "met" : "missed" }'; }

# spread N... — "first/median/last" of the numbers given ("-" for none).
spread() {
	[ $# -gt 0 ] || {
		printf -- '-'
		return
	}
	printf '%s/%s/%s' "$(printf '%s\n' "$@" | sort -g | head -n 1)" "$(median "$@")" \
		"$(printf '%s\n' "$@" | sort -g | tail -n 1)"
}

# ratio_line WIDTH LABEL VALUE [LIMIT] — "LABEL = VALUE", padded to WIDTH,
# with its verdict when a LIMIT (an upper bound) is given.
ratio_line() {
	local w=$1
	shift
	if [ $# -ge 3 ]; then
		say "$(printf "%-${w}s = %s" "$1" "$2 (target <= $3: $(verdict "$2" "$3"))")"
	else
		say "$(printf "%-${w}s = %s" "$1" "$2")"
	fi
}

# ver CMD — the last word of the first line of CMD --version.
ver() { "$1" --version 2>/dev/null | awk 'NR == 1 { print $NF }'; }

# fsize FILE — size in bytes.
fsize() { stat -c %s "$1"; }

# zsize FILE... — bytes of the files concatenated and compressed as one
# zstd -19 stream.
zsize() { cat "$@" | zstd -19 -q -c | wc -c; }

# group N — N with thousands separators (1234567 -> 1,234,567).
group() { printf '%s' "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }

# npm_fetch CACHE PKG VERSION — the path of `npm pack PKG@VERSION`, cached
# in CACHE as NAME-VERSION.tgz (downloaded once; the same names
# bench/delta.sh uses, so the benchmarks share one cache).
npm_fetch() {
	local cache=$1 pkg=$2 ver=$3 name tgz tmp f
	name=${pkg#@}
	name=${name//\//-}
	tgz=$cache/$name-$ver.tgz
	if [ ! -s "$tgz" ]; then
		need npm
		note "npm pack $pkg@$ver"
		mkdir -p "$cache"
		tmp=$(mktemp -d "$cache/pack.XXXXXX")
		f=$(cd "$tmp" && npm pack --silent "$pkg@$ver" | tail -n 1)
		[ -s "$tmp/$f" ] || die "npm pack $pkg@$ver produced no tarball"
		mv "$tmp/$f" "$tgz"
		rmdir "$tmp"
	fi
	printf '%s' "$tgz"
}

# npm_corpus CACHE PKG OLD NEW DIR — DIR/old and DIR/new (created here)
# unpacked from the cached tarballs of PKG@OLD and PKG@NEW, every mtime reset
# as a rebuild would: one time for the old tree, another a day later for the
# new one, so a quick check by size and mtime matches nothing.
npm_corpus() {
	local cache=$1 pkg=$2 v_old=$3 v_new=$4 dir=$5 t_old=1700000000 a b
	a=$(npm_fetch "$cache" "$pkg" "$v_old")
	b=$(npm_fetch "$cache" "$pkg" "$v_new")
	mkdir "$dir/old" "$dir/new"
	tar -xzf "$a" -C "$dir/old" --strip-components=1
	tar -xzf "$b" -C "$dir/new" --strip-components=1
	find "$dir/old" -exec touch -h -d "@$t_old" {} +
	find "$dir/new" -exec touch -h -d "@$((t_old + 86400))" {} +
}
