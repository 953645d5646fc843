# Shared setup for the program tests: the built programs on PATH, a
# scratch directory per test, bats-support and bats-assert.
load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

: "${CM_BIN:?CM_BIN must point at the build directory (run through ctest or make test)}"
export PATH="$CM_BIN:$PATH"

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
}

# mktree DIR: a small site.
mktree() {
	mkdir -p "$1/css" "$1/img"
	printf '<html>%s</html>\n' "$(seq 1 500)" >"$1/index.html"
	printf 'body { color: black; }\n' >"$1/css/site.css"
	head -c 3000 /dev/urandom >"$1/img/logo.png"
	ln -s index.html "$1/home.html"
}

# table_ops TABLE: "op path" lines from cm-delta show --json.
table_ops() {
	cm-delta show --json "$1" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print(e["op"], e.get("path", e.get("path_base64")))'
}

# wait_spares: after a switch cm-apply makes the site's spare in the
# background; one still writing when bats removes the test's directory
# fails the test ("Directory not empty"). cm-apply status waits for it
# (and has it start at once). Every site under $T, bounded.
wait_spares() {
	local cm
	[ -n "${T:-}" ] && [ -d "$T" ] || return 0
	while IFS= read -r cm; do
		timeout 60 cm-apply status --root "${cm%/.cm}" >/dev/null 2>&1 || true
	done < <(find "$T" -maxdepth 4 -type d -name .cm 2>/dev/null)
}
