#!/bin/sh
# Install every Debian package cm needs to build, test and benchmark.
#
# Idempotent and fast when everything is present (one dpkg-query call).
# As root it installs what is missing with apt-get; as anyone else it names
# the missing packages and the command to install them, and fails.
#
# Usage: scripts/deps.sh [build|test|bench|all]   (default: all)
set -eu

build="cmake g++ make pkg-config
libboost-program-options-dev librsync-dev libarchive-dev libssl-dev
libsqlite3-dev libzstd-dev nlohmann-json3-dev libarchive-tools libisal-dev"
test="libgtest-dev bats bats-support bats-assert mandoc shellcheck clang libclang-rt-14-dev
iproute2 nftables procps psmisc rsync python3 zstd time bsdutils util-linux tar openssl coreutils sqlite3 strace"
bench="rsync rdiff xdelta3 zstd npm time keepalived tcpdump aria2 opentracker mktorrent socat udpcast uftp"

case "${1:-all}" in
build) want="$build" ;;
test) want="$build $test" ;;
bench) want="$build $bench" ;;
all) want="$build $test $bench" ;;
*)
	echo "usage: scripts/deps.sh [build|test|bench|all]" >&2
	exit 2
	;;
esac

missing=""
for p in $want; do
	case " $missing " in *" $p "*) continue ;; esac
	# npm may come from outside Debian (nodesource conflicts with Debian's
	# npm package): any npm on PATH will do.
	if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then
		continue
	fi
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: install them as root:  apt-get install -y$missing" >&2
	exit 1
fi

echo "deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists; an old one may have stale ones.
if ! apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends $missing
fi
