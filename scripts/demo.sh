#!/bin/sh
# make demo: publish the built-in sample site with the stages that exist
# (cm-delta, cm-assign, cm-apply) into a local site directory, as a web
# server would see it, and say what happened at each step.
# Usage: scripts/demo.sh BUILD_DIR
set -eu
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
PATH="$build:$PATH"
demo="$build/demo"
rm -rf "$demo"
mkdir -p "$demo/site" "$demo/keys"
cd "$demo"
say() { printf '\n== %s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}

say "Keys: the manager signs every assignment; servers check with the public key"
run cm-assign keygen --sign -o keys/site >/dev/null
echo "keys/site.sec (manager), keys/site.pub (servers)"

say "Release 1 of the sample site is built in staging/"
"$src/scripts/sample-site.sh" staging 1
echo "$(find staging -type f | wc -l) files, $(du -sh staging | cut -f1)"

say "First publish: the shadow copy is empty, so everything is new"
mkdir shadow
run cm-delta --stat shadow staging -o publish-1.cmd
run cm-assign build --type replicate --id 1 --site demo --sign-key keys/site.sec --from staging -o a1
echo "The assignment is $(wc -c <a1) bytes for $(du -sb staging | cut -f1) bytes of site (solid zstd)."
run cm-apply --root site --pubkey keys/site.pub a1
run cm-assign build --type commit --id 2 --site demo --target 1 --sign-key keys/site.sec -o c2
run cm-apply --root site --pubkey keys/site.pub c2
echo "site/live -> $(readlink site/live)"
cp -a staging/. shadow/
echo "(the manager's shadow copy is now release 1)"

say "Release 2: a rebuild (every mtime new), 3 posts corrected, one added, one removed, the script bundle renamed"
rm -rf staging
"$src/scripts/sample-site.sh" staging 2
run cm-delta --stat shadow staging -o publish-2.cmd
run cm-assign build --type publish --id 3 --seq 2 --base 1 --site demo --sign-key keys/site.sec \
	publish-2.cmd -o a3
echo "The update travels as $(wc -c <a3) bytes."
run cm-apply --root site --pubkey keys/site.pub a3
echo "Staged beside live; live still serves release 1: $(readlink site/live)"
run cm-assign build --type commit --id 4 --site demo --target 3 --sign-key keys/site.sec -o c4
run cm-apply --root site --pubkey keys/site.pub --reload 'echo "  (reload hook: version $CM_LIVE is live)"' c4
if diff -r staging site/live >/dev/null; then
	echo "site/live is identical to staging: release 2 is live."
else
	echo "site/live differs from staging!" >&2
	exit 1
fi

say "A rollback is one more assignment"
run cm-assign build --type rollback --id 5 --site demo --sign-key keys/site.sec -o r5
run cm-apply --root site --pubkey keys/site.pub r5
run cm-apply status --root site

say "What happened"
cat <<EOT
Only the bytes that changed travelled: unchanged pages with new mtimes were
not sent, changed pages went as deltas of a few dozen bytes, the renamed
bundle as a delta against its old name, all compressed as one stream and
signed. Each server built the new version beside the live one and switched
with one rename; the rollback switched back the same way.

Look around ($demo):
  cm-delta show publish-2.cmd             # the delta table
  cm-assign show a3                       # the assignment: header and commands
  cm-assign verify --pubkey keys/site.pub a3
  ls -l site site/versions; cat site/.cm/state.json
  man -l $src/man/cm.7                    # the overview; cm-delta.1, cm-assign.1, cm-apply.1

The network stages (cm-push, cm-elect, cm-mcast) and the scheduler (cm-sched)
are not built yet: here the assignments went to one local site directory.
EOT
