#!/bin/sh
# Builds the built-in sample site into DIR, as a static site generator
# would: 120 pages, a stylesheet, a script bundle with a content hash in
# its name, a search index, images. Release 2 edits a few pages, renames
# the bundle (new hash) with a small change, adds a page and removes one;
# like a real rebuild, every file gets a new mtime.
# Usage: scripts/sample-site.sh DIR [1|2]
set -eu
dir=$1
rel=${2:-1}
mkdir -p "$dir/posts" "$dir/assets" "$dir/img"
if [ "$rel" = 1 ]; then bundle=app.3f2a9c81.js; else bundle=app.88bb0177.js; fi

awk -v dir="$dir" -v rel="$rel" -v bundle="$bundle" 'BEGIN {
	nw = split("content mover delta multicast leader shadow staging assignment server cluster publish rollback site page cache", word, " ")
	for (i = 1; i <= 120; i++) {
		if (rel == 2 && i == 7) continue               # a removed post
		srand(i)
		f = sprintf("%s/posts/post-%03d.html", dir, i)
		printf "<!doctype html>\n<html><head><title>Post %d</title>\n", i > f
		printf "<link rel=stylesheet href=/assets/site.css>\n" > f
		printf "<script src=/assets/%s></script></head><body>\n<article>\n", bundle > f
		for (p = 0; p < 25; p++) {
			printf "<p>" > f
			for (w = 0; w < 40; w++) printf "%s ", word[1 + int(rand() * nw)] > f
			printf "</p>\n" > f
		}
		if (rel == 2 && (i == 3 || i == 50 || i == 99))
			printf "<p>Updated: a correction to this post.</p>\n" > f
		printf "</article></body></html>\n" > f
		close(f)
	}
	if (rel == 2) {
		f = dir "/posts/post-121.html"
		printf "<!doctype html>\n<html><body><p>A new post.</p></body></html>\n" > f
		close(f)
	}
	f = dir "/index.html"
	printf "<!doctype html>\n<html><body><h1>cm sample site</h1><ul>\n" > f
	for (i = 1; i <= (rel == 2 ? 121 : 120); i++)
		if (!(rel == 2 && i == 7)) printf "<li><a href=/posts/post-%03d.html>Post %d</a></li>\n", i, i > f
	printf "</ul></body></html>\n" > f
	close(f)
	f = dir "/assets/" bundle
	for (i = 0; i < 3000; i++)
		printf "function f%d(a,b){return a*%d+b-%d;}\n", i, i, (rel == 2 && i == 1500) ? 7 : i > f
	close(f)
	f = dir "/assets/site.css"
	for (i = 0; i < 300; i++) printf ".c%d { margin: %dpx; color: #%06x; }\n", i, i % 17, i * 7919 % 16777216 > f
	close(f)
	f = dir "/search-index.json"
	printf "[" > f
	for (i = 1; i <= 120; i++) printf "%s{\"id\":%d,\"title\":\"Post %d\"}", (i > 1 ? "," : ""), i, i > f
	printf "]\n" > f
	close(f)
}'
# Images: incompressible, identical in both releases.
for n in 1 2 3 4 5 6; do
	awk -v n="$n" 'BEGIN { srand(n); for (i = 0; i < 20000; i++) printf "%c", int(rand() * 256) }' >"$dir/img/photo-$n.jpg"
done
ln -sf posts/post-001.html "$dir/welcome.html"
# A rebuild touches everything.
if [ "$rel" = 1 ]; then stamp=202601010000; else stamp=202606010000; fi
find "$dir" -exec touch -h -t "$stamp" {} +
