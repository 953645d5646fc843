#!/bin/sh
# make demo: publish the built-in sample site with the stages that exist,
# and say what happened at each step.
# Usage: scripts/demo.sh BUILD_DIR
set -eu
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
PATH="$build:$PATH"
demo="$build/demo"
rm -rf "$demo"
mkdir -p "$demo"
say() { printf '\n== %s\n' "$*"; }

say "Building release 1 of the sample site in $demo/staging"
"$src/scripts/sample-site.sh" "$demo/staging" 1
echo "$(find "$demo/staging" -type f | wc -l) files, $(du -sh "$demo/staging" | cut -f1)"

say "First publish: the shadow copy is empty, so everything is new"
mkdir "$demo/shadow"
echo "\$ cm-delta --stat shadow staging -o publish-1.cmd"
(cd "$demo" && cm-delta --stat shadow staging -o publish-1.cmd)
echo "The delta table is $(wc -c <"$demo/publish-1.cmd") bytes: $demo/publish-1.cmd"

say "After a publish, the manager's shadow copy becomes what was published"
cp -a "$demo/staging/." "$demo/shadow/"
echo "\$ cp -a staging/. shadow/"

say "Release 2: a rebuild (every mtime new), 3 posts corrected, a post added and one removed, the script bundle renamed with a new content hash"
rm -rf "$demo/staging"
"$src/scripts/sample-site.sh" "$demo/staging" 2
echo "\$ cm-delta --stat shadow staging -o publish-2.cmd"
(cd "$demo" && cm-delta --stat shadow staging -o publish-2.cmd)
echo
echo "\$ cm-delta show publish-2.cmd | head"
(cd "$demo" && cm-delta show publish-2.cmd | head -n 8)
echo "..."

say "What happened"
cat <<EOT
Only the bytes that changed would travel: unchanged pages with new mtimes
are not sent, changed pages go as librsync deltas of a few dozen bytes, and
the renamed bundle app.88bb0177.js is a delta against app.3f2a9c81.js.

Look around:
  cd $demo
  cm-delta show --json publish-2.cmd     # every entry as JSON
  man -l $src/man/cm-delta.1             # the program; cm-delta.5 for the format

The next stages (cm-assign, cm-push, cm-elect, cm-mcast, cm-apply, cm-sched)
are not built yet; see 'man -l $src/man/cm.7'.
EOT
