#!/usr/bin/env bats
# cm-apply as a program: staging, the atomic switch, rollback, ordering,
# replays, keys, tampered and hostile packs, kills at random moments and a
# full disk. Every site is SITE_DIR=$T/S unless a test says otherwise.

load helper
bats_require_minimum_version 1.5.0

# ---- trees and packs

# mksrc DIR: a site with a bit of everything: nested and empty directories,
# modes, an empty file, a name with a space, relative, dangling and
# directory symlinks, a text file large enough to be patched, a stored type.
mksrc() {
	mktree "$1"
	mkdir -p "$1/a/b/c" "$1/empty" "$1/private"
	chmod 700 "$1/private"
	echo secret >"$1/private/key.txt"
	chmod 600 "$1/private/key.txt"
	printf '#!/bin/sh\necho hi\n' >"$1/run.sh"
	chmod 755 "$1/run.sh"
	: >"$1/a/b/c/empty.txt"
	echo "spaces" >"$1/a/with space.txt"
	ln -s ../../index.html "$1/a/b/up.html"
	ln -s nowhere "$1/dangling"
	ln -s css "$1/styles"
	seq 1 20000 >"$1/big.txt"
	head -c 200000 /dev/urandom >"$1/img/photo.jpg"
	chmod 640 "$1/css/site.css"
}

# mkchange A B: B is A with every kind of change: a patched file, new, changed
# and deleted files, type changes both ways, mode changes, new deep dirs.
mkchange() {
	cp -a "$1" "$2"
	sed -i 's/^1000$/one thousand/' "$2/big.txt"
	echo new >"$2/new.txt"
	rm "$2/css/site.css"
	rm "$2/home.html" && echo "now a file" >"$2/home.html"
	rm -r "$2/img" && echo "img is a file now" >"$2/img"
	rm "$2/styles" && mkdir "$2/styles" && echo "p {}" >"$2/styles/x.css"
	rm "$2/a/b/c/empty.txt" && ln -s ../up.html "$2/a/b/c/empty.txt"
	chmod 600 "$2/run.sh"
	chmod 755 "$2/private"
	mkdir -p "$2/new/dir/deep" && echo deep >"$2/new/dir/deep/f"
	printf 'changed' >"$2/a/with space.txt"
	rm -r "$2/empty"
}

# listing DIR: every entry (path, type, mode, symlink target) and the SHA-256
# of every file, following DIR itself if it is a symlink (as `live` is).
listing() {
	(
		cd "$1" || exit 1
		find . -mindepth 1 -printf '%P %y %m %l\n' | LC_ALL=C sort
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
	)
}

# same_tree DIR1 DIR2: the listings are equal (the difference shown if not).
same_tree() {
	diff <(listing "$1") <(listing "$2") || {
		echo "the trees $1 and $2 differ"
		return 1
	}
}

# live_is SITE N: live is the symlink versions/N.
live_is() {
	local got
	got=$(readlink "$1/live")
	[ "$got" = "versions/$2" ] || {
		echo "live -> '$got', expected versions/$2"
		return 1
	}
}

# versions SITE: the complete versions on disk, in order, on one line.
versions() {
	# shellcheck disable=SC2012 # the names are numbers
	ls "$1/versions" | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# no_temps SITE: nothing staged or half deleted is left under versions/;
# only the spare the state names (cm-apply status waits for the one being
# made in the background).
no_temps() {
	local left spare
	spare=$(jfield "$(cm-apply status --root "$1" --json)" spare)
	# The scratch directory stays, empty.
	left=$(find "$1/versions" -mindepth 1 -maxdepth 1 -name '.*' ! -name ".spare-$spare" ! -name .scratch -printf '%f\n'
		if [ -d "$1/versions/.scratch" ]; then find "$1/versions/.scratch" -mindepth 1 -printf '.scratch/%P\n'; fi)
	[ -z "$left" ] || {
		echo "left in $1/versions: $left"
		return 1
	}
}

# no_crash: the last `run` ended with an exit code, not a signal.
no_crash() {
	[ "$status" -lt 128 ] || {
		echo "killed by a signal: status $status"
		return 1
	}
}

# jfield JSON KEY: one field of a JSON object (JSON-encoded unless a string).
jfield() {
	python3 -c '
import json, sys
v = json.loads(sys.argv[1])[sys.argv[2]]
print(v if isinstance(v, str) else json.dumps(v))' "$@"
}

# pk ARGS...: a pack for site www, fast (zstd level 1).
pk() {
	cm-assign build --site www --level 1 "$@"
}

# switch TYPE ID TARGET: a commit or rollback pack named TYPE.ID.
switch() {
	pk --type "$1" --id "$2" --target "$3" -o "$1.$2"
}

# base_site: the tree src replicated (assignment 1, sequence 1) and live.
base_site() {
	mksrc src
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root S r1
	cm-apply --root S commit.2
}

# publish ID SEQ BASE FROM TO: a publish of the change FROM -> TO, as p.ID.
publish() {
	cm-delta "$4" "$5" | pk --type publish --id "$1" --seq "$2" --base "$3" - -o "p.$1"
}

# A rewriter of packs for the hostile-pack tests (cm-assign(5)). It decodes
# the header and the command list, applies edits, and writes the pack again
# with the command list stored plain and every hash and the trailer
# recomputed, so the pack is well formed and only the intended change is in
# it.
#   frames PACK                  "KIND FRAME_START PAYLOAD_START LENGTH" lines
#   commands PACK                "OP PATH" lines
#   rewrite PACK OUT EDIT...     with edits
#     path:OLD:NEW       a command's path
#     source:PATH:SRC    a copy's source or a patch's basis
#     add:OP:PATH        a command without data (mkdir/chmod mode 0777),
#                        after the unpack commands
#     drop:OP:PATH       drop a command that takes no data
#     id:N sequence:N base:N part:N site:NAME    header fields
PACKTOOL=$(
	cat <<'PY'
import hashlib, json, sys

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)

def svarint(v):
    return varint((v << 1) ^ (v >> 63) if v < 0 else v << 1)

class R:
    def __init__(s, d, p=0):
        s.d, s.p = d, p
    def u8(s):
        s.p += 1
        return s.d[s.p - 1]
    def varint(s):
        v = sh = 0
        while True:
            b = s.u8()
            v |= (b & 0x7F) << sh
            sh += 7
            if b < 0x80:
                return v
    def svarint(s):
        v = s.varint()
        return (v >> 1) ^ -(v & 1)
    def raw(s, n):
        s.p += n
        return s.d[s.p - n:s.p]
    def bytes(s):
        return s.raw(s.varint())

def frames(d):
    assert d[:8] == b"CMASSIGN"
    r = R(d, 8)
    ver = r.varint()
    out = []
    while r.p < len(d):
        start = r.p
        k = chr(r.u8())
        n = r.varint()
        out.append([k, start, r.p, r.raw(n)])
    return ver, out

HFIELDS = ("id", "job", "sequence", "base", "part")
HTAIL = ("target", "commands", "data_bytes", "content_bytes")

def parse_header(b):
    r = R(b)
    h = {"type": r.u8()}
    for f in HFIELDS:
        h[f] = r.varint()
    h["last"] = r.u8()
    for f in ("site", "group"):
        h[f] = r.bytes()
    h["created"] = r.svarint()
    for f in HTAIL:
        h[f] = r.varint()
    h["enc"] = r.u8()
    h["encinfo"] = r.raw(15) if h["enc"] else b""
    h["members"] = []
    for _ in range(3):
        fl = r.u8()
        h["members"].append(None if fl == 0 else [fl, r.varint(), r.varint(), r.raw(32)])
    assert r.p == len(b), "header not fully parsed"
    return h

def encode_header(h):
    o = bytearray([h["type"]])
    for f in HFIELDS:
        o += varint(h[f])
    o.append(h["last"])
    for f in ("site", "group"):
        o += varint(len(h[f])) + h[f]
    o += svarint(h["created"])
    for f in HTAIL:
        o += varint(h[f])
    o.append(h["enc"])
    o += h["encinfo"]
    for m in h["members"]:
        o += b"\0" if m is None else bytes([m[0]]) + varint(m[1]) + varint(m[2]) + m[3]
    return bytes(o)

OPS = {1: "unpack", 2: "mkdir", 3: "put", 4: "patch", 5: "copy", 6: "copy-new", 7: "symlink",
       8: "remove", 9: "rmdir", 10: "chmod"}
CODES = {v: k for k, v in OPS.items()}
MODE = ("mkdir", "put", "patch", "copy", "copy-new", "chmod")
CONTENT = ("put", "patch", "copy", "copy-new")

def parse_commands(plain):
    r = R(plain)
    out = []
    while r.p < len(plain):
        rec = R(r.bytes())
        c = {"op": OPS[rec.u8()]}
        if c["op"] == "unpack":
            c["member"], c["steps"] = rec.u8(), rec.u8()
        else:
            c["path"] = rec.bytes()
        if c["op"] in MODE:
            c["mode"] = rec.varint()
        if c["op"] in CONTENT:
            c["mtime"], c["size"], c["check"] = rec.svarint(), rec.varint(), rec.raw(16)
        if c["op"] == "put":
            c["from"] = rec.u8()
        elif c["op"] == "patch":
            c["basis"], c["basis_check"] = rec.bytes(), rec.raw(8)
            c["format"], c["from"], c["length"] = rec.u8(), rec.u8(), rec.varint()
        elif c["op"] in ("copy", "copy-new"):
            c["source"] = rec.bytes()
        elif c["op"] == "symlink":
            c["target"] = rec.bytes()
        assert rec.p == len(rec.d), "command not fully parsed"
        out.append(c)
    return out

def encode_commands(cs):
    out = bytearray()
    for c in cs:
        o = bytearray([CODES[c["op"]]])
        if c["op"] == "unpack":
            o += bytes([c["member"], c["steps"]])
        else:
            o += varint(len(c["path"])) + c["path"]
        if c["op"] in MODE:
            o += varint(c["mode"])
        if c["op"] in CONTENT:
            o += svarint(c["mtime"]) + varint(c["size"]) + c["check"]
        if c["op"] == "put":
            o.append(c["from"])
        elif c["op"] == "patch":
            o += varint(len(c["basis"])) + c["basis"] + c["basis_check"]
            o += bytes([c["format"], c["from"]]) + varint(c["length"])
        elif c["op"] in ("copy", "copy-new"):
            o += varint(len(c["source"])) + c["source"]
        elif c["op"] == "symlink":
            o += varint(len(c["target"])) + c["target"]
        out += varint(len(o)) + o
    return bytes(out)

def unzstd(b):
    import subprocess
    return subprocess.run(["zstd", "-dcq"], input=b, capture_output=True, check=True).stdout

def write(path, ver, fr):
    out = bytearray(b"CMASSIGN" + varint(ver))
    t = hashlib.sha256()
    for k, _, _, p in fr:
        if k == "T":
            p = t.digest()
        f = k.encode() + varint(len(p)) + p
        if k in "HC":
            t.update(f)
        out += f
    open(path, "wb").write(out)

def load(path):
    ver, fr = frames(open(path, "rb").read())
    H = [f for f in fr if f[0] == "H"][0]
    C = [f for f in fr if f[0] == "C"][0]
    h = parse_header(H[3])
    assert not h["enc"], "cannot rewrite an encrypted pack"
    plain = unzstd(C[3]) if h["members"][0][0] & 2 else C[3]
    return ver, fr, H, C, h, parse_commands(plain)

cmd = sys.argv[1]
if cmd == "frames":
    ver, fr = frames(open(sys.argv[2], "rb").read())
    for k, start, payload, p in fr:
        print(k, start, payload, len(p))
elif cmd == "commands":
    ver, fr, H, C, h, cs = load(sys.argv[2])
    for c in cs:
        print(c["op"], c.get("path", b"").decode(errors="replace"))
elif cmd == "rewrite":
    src, dst, edits = sys.argv[2], sys.argv[3], sys.argv[4:]
    ver, fr, H, C, h, cs = load(src)
    for e in edits:
        what, *args = e.split(":", 2)
        if what == "path":      # path:OLD:NEW   rename a command's path
            hit = [c for c in cs if c.get("path") == args[0].encode()]
            assert hit, "no command with path " + args[0]
            for c in hit:
                c["path"] = args[1].encode()
        elif what == "source":  # source:PATH:SOURCE   a copy's source or a patch's basis
            for c in cs:
                if c.get("path") == args[0].encode():
                    c["basis" if c["op"] == "patch" else "source"] = args[1].encode()
        elif what == "add":     # add:OP:PATH   append a command without data
            c = {"op": args[0], "path": args[1].encode()}
            if args[0] in ("mkdir", "chmod"):
                c["mode"] = 0o777
            if args[0] == "symlink":
                c["target"] = b"x"
            cs.insert(sum(1 for x in cs if x["op"] == "unpack"), c)
        elif what == "drop":    # drop:OP:PATH   remove commands that take no data
            cs = [c for c in cs if not (c["op"] == args[0] and c.get("path") == args[1].encode())]
        elif what in HFIELDS:   # id:N, sequence:N, base:N, part:N
            h[what] = int(args[0])
        elif what == "site":
            h["site"] = args[0].encode()
        else:
            sys.exit("packtool: unknown edit " + e)
    if any(e.split(":")[0] in ("path", "source", "add", "drop") for e in edits):
        plain = encode_commands(cs)
        C[3] = plain  # stored as it is
        h["members"][0] = [1, len(plain), len(plain), hashlib.sha256(plain).digest()]
        h["commands"] = len(cs)
    H[3] = encode_header(h)
    write(dst, ver, fr)
else:
    sys.exit("packtool: unknown command " + cmd)
PY
)

packtool() {
	python3 -c "$PACKTOOL" "$@"
}

# flip PACK OUT OFFSET: PACK with the byte at OFFSET inverted, as OUT.
flip() {
	python3 -c '
import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[int(sys.argv[3])] ^= 0xff
open(sys.argv[2], "wb").write(d)' "$@"
}

# frame_middle PACK KIND: the offset of the middle byte of a frame's payload.
frame_middle() {
	packtool frames "$1" | awk -v k="$2" '$1 == k { print $3 + int($4 / 2); found = 1 } END { exit !found }'
}

# Unmounts what a test mounted, even when it failed.
teardown() {
	if [ -n "${BG:-}" ]; then
		kill -9 "$BG" 2>/dev/null || true
	fi
	wait_spares
	if [ -n "${MNT:-}" ] && mountpoint -q "$MNT"; then
		umount "$MNT" || umount -l "$MNT"
	fi
}

# ---- the command line

@test "progress on a terminal only, erased before the report" {
	mksrc src
	mkdir S T2
	pk --type replicate --id 1 --from src -o r1
	run script -qec "cm-apply --root S r1" /dev/null
	assert_success
	assert_output --regexp 'cm-apply: applying, [0-9,]+/[0-9,]+ commands, [0-9.]+ [KMG]?i?B written'
	# A new phase is drawn at once, whatever the rate limit.
	assert_output --partial "cm-apply: syncing, 22/22 commands"
	# The report comes after the line is erased, on a line of its own.
	assert_output --regexp $'\r\e\\[Kassignment 1 \\(replicate\\): staged'
	run cm-apply --root T2 r1
	assert_success
	refute_output --partial "applying,"
	assert_output --regexp '^assignment 1 \(replicate\): staged'
}

@test "--help and --version" {
	run cm-apply --help
	assert_success
	assert_output --partial "usage: cm-apply --root DIR [options] [ASSIGNMENT|-]"
	assert_output --partial "--pubkey"
	assert_output --partial "--keep"
	assert_output --partial "--reload"
	# The program's help names its other command.
	assert_output --partial "cm-apply status --root DIR [--json]"
	run cm-apply --version
	assert_success
	assert_output --regexp '^cm-apply \(cm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run cm-apply status --help
	assert_success
	assert_output --partial "usage: cm-apply status --root DIR"
}

@test "status only looks: nothing created, and a read-only site can be read" {
	base_site
	cm-apply status --root S >/dev/null # waits for the background spare
	before=$(find S -printf '%P %y %m %s %T@\n' | sort)
	run cm-apply status --root S/live
	assert_success
	assert_output --partial "(none yet)"
	[ ! -e S/live/.cm ] && [ ! -e S/live/versions ]
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" live)" = 1 ]
	[ "$(find S -printf '%P %y %m %s %T@\n' | sort)" = "$before" ]
	MNT=$T/ro
	mkdir "$MNT"
	mount --bind S "$MNT"
	mount -o remount,ro,bind "$MNT"
	run cm-apply status --root "$MNT" --json
	assert_success
	[ "$(jfield "$output" live)" = 1 ]
}

@test "usage errors exit 2 with a hint" {
	mksrc src
	pk --type replicate --id 1 --from src -o r1
	run cm-apply r1
	assert_failure 2
	assert_output --partial "--root is required"
	run cm-apply status
	assert_failure 2
	assert_output --partial "--root is required"
	run cm-apply --root S --no-such-option r1
	assert_failure 2
	assert_output --partial "Try 'cm-apply --help'"
	run cm-apply --root S r1 extra
	assert_failure 2
	run cm-apply --root S --keep notanumber r1
	assert_failure 2
	# Nothing was created by a refused command line.
	[ ! -e S ]
	# Negative or not a number: refused, not read as 2^32 - 1 or NaN.
	run cm-apply --root S --keep -1 x
	assert_failure 2
	assert_output --partial "--keep must not be negative (got '-1')"
	run cm-apply --root S --wait nan x
	assert_failure 2
	assert_output --partial "--wait must be a finite number (got 'nan')"
}

@test "a site directory that does not exist is an error, not created" {
	mksrc src
	pk --type replicate --id 1 --from src -o r1
	run cm-apply --root nosuch r1
	assert_failure 1
	assert_output --partial "nosuch"
	[ ! -e nosuch ]
}

@test "status on a fresh site, as text and as JSON" {
	mkdir S
	run cm-apply status --root S
	assert_success
	assert_output --partial "live: nothing"
	assert_output --partial "latest sequence: 0"
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" live)" = 0 ]
	[ "$(jfield "$output" versions)" = "[]" ]
	[ "$(jfield "$output" history)" = "[]" ]
	[ "$(jfield "$output" staging)" = "null" ]
	[ "$(jfield "$output" last_sequence)" = 0 ]
	[ ! -e S/live ]
}

@test "status after a replicate and a commit names the live version" {
	base_site
	run cm-apply status --root S
	assert_success
	assert_output --partial "site www in S"
	assert_output --partial "live: version 1"
	assert_output --partial "version 1: sequence 1, replicate, live"
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" live)" = 1 ]
	[ "$(jfield "$output" site)" = www ]
	[ "$(jfield "$output" live_sequence)" = 1 ]
}

# ---- the cycle

@test "replicate then commit: live is a symlink to the version and equals the tree exactly" {
	mksrc src
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	run cm-apply --root S r1
	assert_success
	assert_output --partial "assignment 1 (replicate): staged"
	# Staged, not live yet.
	[ ! -e S/live ]
	[ "$(versions S)" = 1 ]
	run cm-apply --root S commit.2
	assert_success
	assert_output --partial "switched: version 1 is live"
	[ -L S/live ]
	live_is S 1
	same_tree src S/live
	no_temps S
}

@test "the report as JSON: id, type, result, counts, duration" {
	mksrc src
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	run cm-apply --root S --json r1
	assert_success
	[ "$(jfield "$output" assignment)" = 1 ]
	[ "$(jfield "$output" type)" = replicate ]
	[ "$(jfield "$output" result)" = staged ]
	[ "$(jfield "$output" failures)" = "[]" ]
	[ "$(jfield "$output" bytes_written)" -gt 200000 ]
	[ "$(jfield "$output" commands)" -gt 10 ]
	python3 -c 'import json,sys; assert json.loads(sys.argv[1])["seconds"] >= 0' "$output"
}

@test "publish then commit: live is the new tree, the old version stays, rollback goes back" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	run cm-apply --root S p.3
	assert_success
	assert_output --partial "assignment 3 (publish): staged"
	# Staging changed nothing live, nor the old version.
	live_is S 1
	same_tree src S/live
	switch commit 4 3
	run cm-apply --root S commit.4
	assert_success
	live_is S 3
	same_tree new S/live
	same_tree src S/versions/1
	[ "$(versions S)" = "1 3" ]
	switch rollback 5 1
	run cm-apply --root S rollback.5
	assert_success
	assert_output --partial "version 1 is live"
	live_is S 1
	same_tree src S/live
	no_temps S
}

# site_at_3: versions 1 and 3, 3 live, 1 before it; rollback.5 goes to 1.
site_at_3() {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root "$1" p.3
	switch commit 4 3
	cm-apply --root "$1" commit.4
	switch rollback 5 0
}

@test "a rollback on a full disk switches nothing; run again with room, it goes back once" {
	MNT=$T/disk
	mkdir "$MNT"
	mount -t tmpfs -o size=3m tmpfs "$MNT"
	base_site() {
		mksrc src
		pk --type replicate --id 1 --from src -o r1
		switch commit 2 1
		cm-apply --root "$MNT" r1
		cm-apply --root "$MNT" commit.2
	}
	site_at_3 "$MNT"
	cm-apply status --root "$MNT" >/dev/null # waits for the spare
	dd if=/dev/zero of="$MNT/fill" bs=1k 2>/dev/null || true
	run cm-apply --root "$MNT" --json rollback.5
	assert_failure 1
	[ "$(jfield "$output" result)" = failed ]
	assert_output --partial "No space left on device"
	# The state was not saved, so nothing switched: live and state agree.
	live_is "$MNT" 3
	[ "$(jfield "$(cm-apply status --root "$MNT" --json)" live)" = 3 ]
	rm "$MNT/fill"
	run cm-apply --root "$MNT" rollback.5
	assert_success
	assert_output --partial "switched: version 1 is live (was 3)"
	live_is "$MNT" 1
	same_tree src "$MNT/live"
	# Once: again, it is applied already and stays at 1.
	run cm-apply --root "$MNT" rollback.5
	assert_success
	assert_output --partial "already-applied"
	live_is "$MNT" 1
}

# set_switching ROOT ASSIGNMENT TARGET FROM: the state a run leaves when it
# stops right after saving the intent of a rollback.
set_switching() {
	cm-apply status --root "$1" >/dev/null # the background spare saves the state too: done first
	python3 - "$1/.cm/state.json" "$2" "$3" "$4" <<'PY'
import json, sys
p, a, t, f = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = json.load(open(p))
s["switching"] = {"assignment": a, "part": 1, "sequence": 0, "type": "rollback",
                  "target": t, "from": f, "rollback": True}
json.dump(s, open(p, "w"))
PY
}

@test "a switch stopped before its rename is forgotten, and run again it switches" {
	site_at_3 S
	set_switching S 5 1 3
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" live)" = 3 ]
	[ "$(jfield "$output" switching)" = null ]
	live_is S 3
	run cm-apply --root S rollback.5
	assert_success
	assert_output --partial "switched: version 1 is live (was 3)"
	live_is S 1
}

@test "a switch stopped after its rename is finished by the next run, which reloads" {
	site_at_3 S
	set_switching S 5 1 3
	ln -s versions/1 S/live.new
	mv -T S/live.new S/live
	# The state said 3 and a rollback under way; live says 1. Finished as
	# that rollback (history without 3), not as a commit of 1 after 3.
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" live)" = 1 ]
	[ "$(jfield "$output" history)" = "[]" ]
	# The same rollback again: applied already, and its reload runs now.
	run cm-apply --root S --reload "touch '$T/reloaded'" rollback.5
	assert_success
	assert_output --partial "already-applied"
	assert_output --partial "reload: ok"
	[ -e "$T/reloaded" ]
	live_is S 1
	rm "$T/reloaded"
	run cm-apply --root S --reload "touch '$T/reloaded'" rollback.5
	assert_success
	[ ! -e "$T/reloaded" ]
	# And a rollback from here has nowhere to go.
	switch rollback 6 0
	run cm-apply --root S rollback.6
	assert_failure 1
	assert_output --partial "no earlier version"
}

@test "a commit's switch finished from its intent forgets the old live version whose tree went" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	cm-apply status --root S >/dev/null
	# What a crash can leave after a commit with --keep 0: the intent saved
	# before the switch (its last save, not synced, lost), live switched,
	# and version 1 moved aside by the cleanup that followed.
	python3 - S/.cm/state.json <<'PY'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
s["switching"] = {"assignment": 4, "part": 1, "sequence": 0, "type": "commit",
                  "target": 3, "from": 1, "rollback": False}
json.dump(s, open(p, "w"))
PY
	ln -s versions/3 S/live.new
	mv -T S/live.new S/live
	mv S/versions/1 S/versions/.trash-crashed
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" live)" = 3 ]
	[ "$(jfield "$output" history)" = "[]" ]
	# Nothing to go back to, said as such (not "no tree at versions/1").
	switch rollback 5 0
	run cm-apply --root S rollback.5
	assert_failure 1
	assert_output --partial "no earlier version"
	live_is S 3
}

@test "rollback without a target goes to the previous version; a second one fails clearly" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	switch commit 4 3
	cm-apply --root S commit.4
	switch rollback 5 0
	run cm-apply --root S rollback.5
	assert_success
	live_is S 1
	same_tree src S/live
	switch rollback 6 0
	run cm-apply --root S rollback.6
	assert_failure 1
	assert_output --partial "no earlier version"
	live_is S 1
	same_tree src S/live
}

@test "--keep N removes versions beyond N earlier live ones after a switch" {
	base_site
	cp -a src t1
	prev=src
	for n in 3 5 7; do
		cp -a "$prev" "t$n"
		echo "version $n" >"t$n/v.txt"
		publish "$n" "$n" "$((n - 2))" "$prev" "t$n"
		cm-apply --root S "p.$n"
		switch commit "$((n + 1))" "$n"
		cm-apply --root S --keep 5 "commit.$((n + 1))"
		prev=t$n
	done
	[ "$(versions S)" = "1 3 5 7" ]
	cp -a t7 t9
	echo "version 9" >t9/v.txt
	publish 9 9 7 t7 t9
	cm-apply --root S p.9
	switch commit 10 9
	run cm-apply --root S --keep 1 commit.10
	assert_success
	live_is S 9
	same_tree t9 S/live
	# Live and one earlier live version.
	[ "$(versions S)" = "7 9" ]
	no_temps S
	# The kept one still rolls back.
	switch rollback 11 0
	cm-apply --root S rollback.11
	live_is S 7
	same_tree t7 S/live
}

# ---- the spare

# inode FILE: its inode number.
inode() { stat -c %i "$1"; }

@test "after a switch a spare copy of live is made in the background; the next publish stages from it" {
	base_site
	# status waits for the site's lock, which the background spare holds.
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" spare)" = 1 ]
	[ -d S/versions/.spare-1 ]
	same_tree src S/versions/.spare-1
	# Files are hard links to live's, not copies.
	[ "$(inode S/versions/.spare-1/big.txt)" = "$(inode S/versions/1/big.txt)" ]
	run cm-apply status --root S
	assert_output --partial "spare: a copy of version 1"
	mkchange src new
	publish 3 3 1 src new
	run cm-apply --root S --json p.3
	assert_success
	[ "$(jfield "$output" staged_from)" = spare ]
	[ ! -e S/versions/.spare-1 ]
	same_tree new S/versions/3
	same_tree src S/versions/1
	switch commit 4 3
	cm-apply --root S commit.4
	same_tree new S/live
	run cm-apply status --root S --json
	[ "$(jfield "$output" spare)" = 3 ]
	same_tree new S/versions/.spare-3
	no_temps S
}

@test "the spare waits --spare-delay after a switch, and no longer than the next cm-apply" {
	mksrc src
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root S r1
	# The child keeps none of the caller's descriptors but the lock: a
	# reader of a pipe on fd 3 sees its end when cm-apply ends, not 600 s
	# later (timeout bounds the test).
	timeout 60 sh -c "cm-apply --root S --spare-delay 600 commit.2 3>&1 >/dev/null | cat >/dev/null"
	# The child waits without copying: no spare yet, and it holds the
	# lock (a second cm-apply that gives up at once finds the site busy).
	[ -z "$(find S/versions -mindepth 1 -maxdepth 1 -name '.spare-*')" ]
	run cm-apply --root S --wait 0 commit.2
	[ "$status" -eq 7 ]
	assert_output --partial "is busy"
	# Opening the lock file, that cm-apply woke the child: it copies now,
	# and status waits for it (well within the 600 s; timeout bounds it).
	run timeout 120 cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" spare)" = 1 ]
	same_tree src S/versions/.spare-1
	# 0: at once, as before; a bad delay is a usage error.
	run cm-apply --root S --spare-delay -1 commit.2
	[ "$status" -eq 2 ]
	assert_output --partial "--spare-delay must be between 0 and 3600 seconds"
}

# chain_site: versions 1 (replicate) to 7, each publish on the one
# before, t3 t5 t7 their trees (a/b replaced whole each time); live is 7
# and the spare is version 1, dropped from the history at the switch to 7:
# the commits before made no spare (--no-spare), so 1 became it.
chain_site() {
	base_site
	prev=src
	for n in 3 5 7; do
		cp -a "$prev" "t$n"
		echo "version $n" >"t$n/v.txt"
		rm -rf "t$n/a/b" && mkdir -p "t$n/a/b" && echo "in $n" >"t$n/a/b/only-$n.txt"
		publish "$n" "$n" "$((n - 2))" "$prev" "t$n"
		cm-apply --root S "p.$n"
		switch commit "$((n + 1))" "$n"
		if [ "$n" = 7 ]; then
			cm-apply --root S "commit.$((n + 1))"
		else
			cm-apply --root S --no-spare "commit.$((n + 1))"
		fi
		prev=t$n
	done
	[ "$(versions S)" = "3 5 7" ]
	[ "$(jfield "$(cm-apply status --root S --json)" spare)" = 1 ]
	same_tree src S/versions/.spare-1
	cp -a t7 t9
	echo "version 9" >t9/v.txt
	rm -rf t9/a/b && mkdir -p t9/a/b && echo "in 9" >t9/a/b/only-9.txt
	publish 9 9 7 t7 t9
	switch commit 10 9
}

@test "a publish staged from the spare syncs what it wrote, not the whole file system" {
	base_site
	cm-apply status --root S >/dev/null
	mkchange src new
	publish 3 3 1 src new
	# LeakSanitizer cannot run under ptrace (the ASan build of the tests).
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		strace -f -e trace=fsync,syncfs -o sync.txt cm-apply --root S p.3
	grep -q 'fsync(' sync.txt
	if grep -q 'syncfs(' sync.txt; then
		echo "syncfs from the spare:"
		cat sync.txt
		return 1
	fi
	# A clone (--no-spare) syncs the file system: one journal commit for
	# its thousands of links.
	cp -a new t5
	echo five >t5/five.txt
	publish 5 5 3 new t5
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		strace -f -e trace=fsync,syncfs -o sync5.txt cm-apply --root S --no-spare p.5
	grep -q 'syncfs(' sync5.txt
	switch commit 6 5
	cm-apply --root S commit.6
	same_tree t5 S/live
}

@test "a spare several releases behind catches up through their change records" {
	chain_site
	# Staging 9 on 7 goes back 7 -> 5 -> 3 -> 1.
	run cm-apply --root S --json p.9
	assert_success
	[ "$(jfield "$output" staged_from)" = spare ]
	cm-apply --root S commit.10
	same_tree t9 S/live
	same_tree t7 S/versions/7
	same_tree t5 S/versions/5
	# Nothing below a/b survives from an earlier release.
	[ "$(ls S/live/a/b)" = only-9.txt ]
	no_temps S
}

@test "a spare that cannot be trusted is dropped and live cloned instead: the result is still exact" {
	chain_site
	printf 'not a record' >S/.cm/changes/5
	run cm-apply --root S --json p.9
	assert_success
	[ "$(jfield "$output" staged_from)" = clone ]
	[ ! -e S/versions/.spare-1 ]
	cm-apply --root S commit.10
	same_tree t9 S/live
	same_tree t7 S/versions/7
	no_temps S
}

@test "--no-spare: staging clones live and no spare is made" {
	mksrc src
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root S --no-spare r1
	cm-apply --root S --no-spare commit.2
	[ "$(jfield "$(cm-apply status --root S --json)" spare)" = 0 ]
	[ -z "$(find S/versions -maxdepth 1 -name '.spare-*')" ]
	mkchange src new
	publish 3 3 1 src new
	run cm-apply --root S --no-spare --json p.3
	assert_success
	[ "$(jfield "$output" staged_from)" = clone ]
}

@test "a version dropped from the history becomes the spare, no clone needed" {
	base_site
	cp -a src t3
	echo "version 3" >t3/v.txt
	cp -a t3 t5
	echo "version 5" >t5/v.txt
	publish 3 3 1 src t3
	publish 5 5 3 t3 t5
	# --no-spare drops the spare of 1 made after the first switch.
	cm-apply --root S --no-spare p.3
	switch commit 4 3
	# --keep 0: the version before live is dropped at once, and is the spare.
	cm-apply --root S --keep 0 commit.4
	[ "$(versions S)" = 3 ]
	[ "$(jfield "$(cm-apply status --root S --json)" spare)" = 1 ]
	same_tree src S/versions/.spare-1
	run cm-apply --root S --json p.5
	assert_success
	[ "$(jfield "$output" staged_from)" = spare ]
	switch commit 6 5
	cm-apply --root S --keep 0 commit.6
	same_tree t5 S/live
	[ "$(versions S)" = 5 ]
	[ "$(jfield "$(cm-apply status --root S --json)" spare)" = 3 ]
	same_tree t3 S/versions/.spare-3
	[ ! -e S/.cm/changes/3 ]
	no_temps S
}

@test "--reload runs after a switch with CM_LIVE set; its failure is an error the report names" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	# shellcheck disable=SC2016 # expanded by the reload shell
	run cm-apply --root S --reload 'echo "reloaded $CM_LIVE" >"$PWD/marker"' p.3
	assert_success
	# Staging is not a switch: no reload.
	[ ! -e marker ]
	switch commit 4 3
	# shellcheck disable=SC2016 # expanded by the reload shell
	run cm-apply --root S --reload 'echo "reloaded $CM_LIVE" >"$PWD/marker"' commit.4
	assert_success
	[ "$(cat marker)" = "reloaded 3" ]
	switch rollback 5 1
	run cm-apply --root S --reload 'exit 3' rollback.5
	assert_failure 1
	assert_output --partial "reload: exit status 3"
	# The switch itself happened.
	live_is S 1
	same_tree src S/live
	# What a reload prints goes to stderr: stdout stays the report alone
	# (JSON for cm-mcast recv --exec to carry).
	switch commit 6 3
	cm-apply --root S --json --reload 'echo reloading; echo done >&2' commit.6 >out.json 2>err.txt
	python3 -c 'import json,sys; r = json.load(open("out.json")); assert r["result"] == "switched", r'
	grep -qx reloading err.txt
}

# ---- idempotent and ordered

@test "the same assignment twice: the second is already-applied and changes nothing" {
	mksrc src
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	cm-apply --root S r1
	before=$(find S -printf '%P %y %m %s %T@ %l\n' | sort; sha256sum S/.cm/state.json)
	run cm-apply --root S r1
	assert_success
	assert_output --partial "already-applied"
	after=$(find S -printf '%P %y %m %s %T@ %l\n' | sort; sha256sum S/.cm/state.json)
	[ "$before" = "$after" ]
	run cm-apply --root S --json r1
	assert_success
	[ "$(jfield "$output" result)" = already-applied ]
	# A damaged copy of it is not "already applied": it is refused.
	head -c "$(($(stat -c %s r1) - 10))" r1 >r1.cut
	run cm-apply --root S --json r1.cut
	assert_failure 3
	[ "$(jfield "$output" result)" = failed ]
}

@test "re-applying a commit is fine and changes nothing" {
	base_site
	run cm-apply --root S commit.2
	assert_success
	assert_output --partial "already-applied"
	live_is S 1
	same_tree src S/live
	# A new commit of what is already live is not an error either.
	switch commit 3 1
	run cm-apply --root S commit.3
	assert_success
	live_is S 1
}

@test "a publish whose base sequence is missing is refused, naming the missing sequences" {
	base_site
	mkchange src new
	publish 4 4 3 src new
	run cm-apply --root S p.4
	assert_failure 1
	assert_output --partial "missing sequence 2-3"
	live_is S 1
	same_tree src S/live
	[ "$(versions S)" = 1 ]
	no_temps S
	run cm-apply status --root S --json
	[ "$(jfield "$output" staging)" = "null" ]
	# One missing sequence is named alone.
	publish 5 3 2 src new
	run cm-apply --root S p.5
	assert_failure 1
	assert_output --partial "missing sequence 2"
	refute_output --partial "missing sequence 2-"
	# Refused is not applied: once the gap is filled it goes through.
	publish 6 2 1 src src
	cm-apply --root S p.6
	run cm-apply --root S p.5
	assert_success
	assert_output --partial "staged"
}

@test "a publish for another site is refused" {
	base_site
	mkchange src new
	cm-delta src new | cm-assign build --site other --type publish --id 3 --seq 3 --base 1 - -o p.3
	run cm-apply --root S p.3
	assert_failure 1
	assert_output --partial "for site 'other'"
	assert_output --partial "this is site 'www'"
	live_is S 1
	[ "$(versions S)" = 1 ]
	no_temps S
}

# mkparts: a ~400 KB incompressible tree `big`, replicated as parts of 64K
# (r.001 ...) and its commit.
mkparts() {
	mkdir -p big/d1 big/d2
	for i in $(seq 1 25); do
		head -c 16000 /dev/urandom >"big/d$((i % 2 + 1))/f$i.bin"
	done
	pk --type replicate --id 1 --from big --max-size 64K -o r
	switch commit 2 1
	ls r.0* >parts
	[ "$(wc -l <parts)" -ge 4 ]
	mkdir S
}

# parts_complete: every part of mkparts' assignment on one standard input,
# then its commit: live is exactly big/, and nothing is left over.
parts_complete() {
	xargs cat <parts | cm-apply --root S -
	cm-apply --root S commit.2
	live_is S 1
	same_tree big S/live
	no_temps S
}

@test "a multi-part assignment applied part by part, in order" {
	mkparts
	n=$(wc -l <parts)
	i=0
	while read -r p; do
		i=$((i + 1))
		run cm-apply --root S "$p"
		assert_success
		if [ "$i" -lt "$n" ]; then
			assert_output --partial "part $i: applied"
			[ "$(versions S)" = "" ]
		else
			assert_output --partial "staged"
		fi
	done <parts
	cm-apply --root S commit.2
	live_is S 1
	same_tree big S/live
	no_temps S
}

@test "a staging the state names but the disk lost is forgotten; the assignment can start over" {
	mkparts
	cm-apply --root S r.001
	# What a kill leaves after another assignment's run moved this staging
	# tree aside (no state saved yet): the state names a tree that is gone.
	mv S/versions/.staging-1 S/versions/.trash-lost
	run cm-apply status --root S --json
	assert_success
	refute_output --partial '"staging":{'
	# Nothing half-applied stands in the way: all parts again, then live.
	parts_complete
}

@test "a part before the one it follows is refused" {
	mkparts
	run cm-apply --root S r.002
	assert_failure 1
	assert_output --partial "part 1 has not been applied"
	[ "$(versions S)" = "" ]
	cm-apply --root S r.001
	run cm-apply --root S r.003
	assert_failure 1
	assert_output --partial "missing part 2"
	# The parts in order still complete it.
	while read -r p; do
		run cm-apply --root S "$p"
		assert_success
	done <parts
	cm-apply --root S commit.2
	same_tree big S/live
	no_temps S
}

@test "a part refused as damaged: every part again completes the assignment" {
	mkparts
	cm-apply --root S r.001
	cm-apply --root S r.002
	head -c -20 r.003 >bad.003
	run cm-apply --root S bad.003
	assert_failure 3
	no_crash
	# The staging tree is gone, and with it what the parts before did: they
	# are not "already applied" any more (which would refuse the rest).
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" staging)" = "null" ]
	no_temps S
	run cm-apply --root S r.001
	assert_success
	assert_output --partial "part 1: applied"
	parts_complete
}

@test "an assignment of more parts than the state keeps records of can still start over" {
	mkparts
	cm-apply --root S r.001
	# As if 999 other assignments had been recorded after part 1: the next
	# part pushes part 1's record out of the 1000 the state keeps.
	python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
s["applied"] += [{"id": 5000 + i, "part": 1, "type": "commit", "sequence": 0, "at_ns": 0} for i in range(999)]
json.dump(s, open(sys.argv[1], "w"))' S/.cm/state.json
	cm-apply --root S r.002
	head -c -20 r.003 >bad.003
	run cm-apply --root S bad.003
	assert_failure 3
	# Its own parts leaving the record do not make it "older than what the
	# server remembers": all its parts again complete it. (Its commit, id
	# 2, is older than the 999 made-up records: not sent here.)
	run cm-apply --root S r.001
	assert_success
	assert_output --partial "part 1: applied"
	run sh -c 'tail -n +2 parts | xargs cat | cm-apply --root S -'
	assert_success
	assert_output --partial "staged"
	[ "$(versions S)" = 1 ]
	same_tree big S/versions/1
}

@test "another assignment staged between two parts: the first one starts over, whole" {
	mkparts
	mksrc src
	pk --type replicate --id 5 --from src -o r5
	cm-apply --root S r.001
	run cm-apply --root S r5
	assert_success
	assert_output --partial "staged"
	run cm-apply --root S r.002
	assert_failure 1
	assert_output --partial "part 1 has not been applied"
	parts_complete
}

@test "all parts concatenated on stdin" {
	mkparts
	parts_complete
}

# ---- keys

@test "--pubkey: an unsigned or foreign-signed pack is refused with exit 4; the right key works" {
	mksrc src
	mkdir S
	cm-assign keygen --sign -o k
	cm-assign keygen --sign -o other
	pk --type replicate --id 1 --from src -o plain
	pk --type replicate --id 1 --from src --sign-key other.sec -o foreign
	pk --type replicate --id 1 --from src --sign-key k.sec -o good
	run cm-apply --root S --pubkey k.pub plain
	assert_failure 4
	[ "$(versions S)" = "" ]
	no_temps S
	# With --json, a report says so too, though the pack never opened.
	run cm-apply --root S --pubkey k.pub --json plain
	assert_failure 4
	[ "$(echo "$output" | head -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"])')" = failed ]
	assert_output --partial "unsigned"
	run cm-apply --root S --pubkey k.pub foreign
	assert_failure 4
	[ "$(versions S)" = "" ]
	no_temps S
	run cm-apply --root S --pubkey k.pub good
	assert_success
	assert_output --partial "staged"
	[ "$(versions S)" = 1 ]
}

@test "--json: a run stopped before its report still prints one, with the site's live version" {
	base_site
	cm-assign keygen --sign -o k
	switch commit 3 1
	# A pack that does not open (unsigned, --pubkey given): live and its
	# sequence are the site's, not zeros.
	run --separate-stderr cm-apply --root S --pubkey k.pub --json commit.3
	assert_failure 4
	[ "$(jfield "$output" result)" = failed ]
	[ "$(jfield "$output" live)" = 1 ]
	[ "$(jfield "$output" live_sequence)" = 1 ]
	[ "$(jfield "$output" site)" = www ]
	# No input, a damaged state, a busy site: a report too, and the exit
	# status of each.
	run --separate-stderr cm-apply --root S --json no-such-pack
	assert_failure 1
	[ "$(jfield "$output" result)" = failed ]
	[[ "$(jfield "$output" message)" == *no-such-pack* ]]
	[ "$(jfield "$output" live)" = 1 ]
	[ "$(jfield "$output" site)" = www ]
	# Stopped before the site is opened (a key that does not load): the
	# site's live version all the same.
	run --separate-stderr cm-apply --root S --json --key no-such-key commit.2
	assert_failure 1
	[ "$(jfield "$output" result)" = failed ]
	[ "$(jfield "$output" live)" = 1 ]
	[ "$(jfield "$output" live_sequence)" = 1 ]
	cp S/.cm/state.json state.saved
	echo garbage >S/.cm/state.json
	run --separate-stderr cm-apply --root S --json commit.2
	assert_failure 3
	[ "$(jfield "$output" result)" = failed ]
	[[ "$(jfield "$output" message)" == *"damaged state"* ]]
	cp state.saved S/.cm/state.json
	flock S/.cm/lock sleep 3 &
	for _ in $(seq 1 50); do
		flock -n S/.cm/lock true || break
		sleep 0.1
	done
	run --separate-stderr cm-apply --root S --json --wait 0 commit.2
	assert_failure 7
	[ "$(jfield "$output" result)" = failed ]
	wait
}

@test "an encrypted pack: no key and a wrong key exit 4, the right key works" {
	mksrc src
	mkdir S
	cm-assign keygen --encrypt -o ek
	cm-assign keygen --encrypt -o wrong
	pk --type replicate --id 1 --from src --encrypt-key ek -o enc
	switch commit 2 1
	run cm-apply --root S enc
	assert_failure 4
	assert_output --partial "--key"
	[ "$(versions S)" = "" ]
	no_temps S
	run cm-apply --root S --key wrong enc
	assert_failure 4
	[ "$(versions S)" = "" ]
	no_temps S
	run cm-apply --root S --key ek enc
	assert_success
	cm-apply --root S commit.2
	same_tree src S/live
}

# ---- tampered packs

@test "a flipped byte in the data is refused: live unchanged, nothing left, the good pack works after" {
	base_site
	mkchange src new
	head -c 300000 /dev/urandom >new/photo2.jpg
	publish 3 3 1 src new
	for kind in R Z; do
		off=$(frame_middle p.3 "$kind")
		flip p.3 "bad.$kind" "$off"
		run cm-apply --root S "bad.$kind"
		assert_failure 3
		live_is S 1
		same_tree src S/live
		[ "$(versions S)" = 1 ]
		no_temps S
	done
	run cm-apply --root S p.3
	assert_success
	assert_output --partial "staged"
	switch commit 4 3
	cm-apply --root S commit.4
	same_tree new S/live
}

@test "a truncated pack is refused: live unchanged, nothing left, the good pack works after" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	size=$(stat -c %s p.3)
	for cut in 100 $((size / 2)) $((size - 40)) $((size - 1)); do
		head -c "$cut" p.3 >short
		run cm-apply --root S short
		assert_failure 3
		live_is S 1
		same_tree src S/live
		[ "$(versions S)" = 1 ]
		no_temps S
	done
	# Cut short on stdin too.
	run bash -c "head -c $((size / 2)) p.3 | cm-apply --root S -"
	assert_failure 3
	no_temps S
	run cm-apply --root S p.3
	assert_success
	switch commit 4 3
	cm-apply --root S commit.4
	same_tree new S/live
}

# ---- hostile paths

@test "crafted paths that leave the site are refused" {
	base_site
	cp -a src new
	echo "evil content" >new/evilfile
	publish 3 3 1 src new
	# The rewriter itself makes packs the tools accept.
	packtool rewrite p.3 same
	cm-assign verify same
	for bad in ../evil "$T/evil" a/../../evil ../../evil ./evil a//evil; do
		packtool rewrite p.3 bad "path:evilfile:$bad"
		run cm-apply --root S bad
		if [ "$status" != 3 ]; then
			echo "path '$bad': exit $status, expected 3: $output"
			return 1
		fi
		assert_output --partial "unsafe path"
	done
	# Nowhere the bad paths could have reached from S/versions/.staging-3.
	for f in "$T/evil" S/evil S/versions/evil S/versions/a; do
		[ ! -e "$f" ]
	done
	live_is S 1
	same_tree src S/live
	[ "$(versions S)" = 1 ]
	no_temps S
	# Refused is not applied: the honest pack still goes through.
	run cm-apply --root S p.3
	assert_success
}

@test "a crafted copy source or mkdir outside the site is refused" {
	base_site
	echo "top secret" >secret
	cp -a src new
	cp new/index.html new/copy.html
	publish 3 3 1 src new
	packtool commands p.3 >cmds
	grep -qx 'copy copy.html' cmds || {
		cat cmds
		false
	}
	for bad in ../../../secret "$T/secret"; do
		packtool rewrite p.3 bad "source:copy.html:$bad"
		run cm-apply --root S bad
		assert_failure 3
		assert_output --partial "unsafe source path"
		no_temps S
	done
	packtool rewrite p.3 bad add:mkdir:../evildir
	run cm-apply --root S bad
	assert_failure 3
	assert_output --partial "unsafe path"
	[ ! -e S/evildir ]
	[ ! -e evildir ]
	live_is S 1
	[ "$(versions S)" = 1 ]
	run ! grep -rq "top secret" S
}

# symsite: version 1 has d -> $T/outside (a directory holding keep.txt),
# live; p.3 is a publish writing the new file dfile.
symsite() {
	mkdir -p outside src
	echo "keep me" >outside/keep.txt
	chmod 750 outside
	outside_before=$(listing outside; stat -c '%a' outside)
	echo hello >src/index.html
	ln -s "$T/outside" src/d
	ln -s ../outside src/rel
	mkdir S
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root S r1
	cm-apply --root S commit.2
	[ -L S/live/d ]
	cp -a src new
	echo "written through the link" >new/dfile
	publish 3 3 1 src new
}

outside_intact() {
	[ "$(listing outside; stat -c '%a' outside)" = "$outside_before" ] || {
		echo "the directory outside the site changed:"
		ls -la outside
		return 1
	}
}

@test "writing through a symlink in the tree is refused" {
	symsite
	for path in d/file rel/file d/sub/file; do
		packtool rewrite p.3 bad "path:dfile:$path"
		run cm-apply --root S bad
		assert_failure
		no_crash
		# Refused at the hostile command, not for some other reason.
		assert_output --partial "(put $path)"
		outside_intact
		live_is S 1
		[ "$(versions S)" = 1 ]
		no_temps S
	done
	for cmd in add:mkdir:d/sub add:chmod:d add:chmod:d/keep.txt add:symlink:d/link; do
		packtool rewrite p.3 bad "$cmd"
		run cm-apply --root S bad
		assert_failure
		no_crash
		op=${cmd#add:}
		assert_output --partial "(${op%%:*} ${op#*:})"
		outside_intact
		no_temps S
	done
	run cm-apply --root S p.3
	assert_success
}

@test "removing through a symlink never deletes what it points to" {
	symsite
	# cm-apply status waits for the spare being made in the background:
	# neither the copy nor the rm may race with it.
	cm-apply status --root S >/dev/null
	cp -a S S.orig
	for cmd in add:remove:d/keep.txt add:rmdir:d add:remove:d add:rmdir:rel add:rmdir:d/sub; do
		cm-apply status --root S >/dev/null
		rm -rf S
		cp -a S.orig S
		packtool rewrite p.3 bad "$cmd"
		run cm-apply --root S bad
		no_crash
		outside_intact
		live_is S 1
		same_tree src S/live
	done
}

@test "a patch whose basis does not match is refused, naming the basis" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-assign show --json p.3 | grep -q '"op":"patch".*"path":"big.txt"' || {
		cm-assign show p.3
		false
	}
	# The file in version 1 is replaced (not written through its hard link).
	rm S/versions/1/big.txt
	seq 1 19999 >S/versions/1/big.txt
	tampered=$(listing S/live)
	run cm-apply --root S p.3
	assert_failure
	no_crash
	assert_output --partial "basis 'big.txt'"
	assert_output --partial "does not have the expected content"
	live_is S 1
	[ "$(listing S/live)" = "$tampered" ]
	[ "$(versions S)" = 1 ]
	no_temps S
	# The JSON report names the failed command.
	run cm-apply --root S --json p.3
	assert_failure
	python3 -c '
import json, sys
r = json.loads(sys.argv[1].splitlines()[0])
assert r["result"] == "failed", r
f = r["failures"]
assert len(f) == 1 and f[0]["op"] == "patch" and f[0]["path"] == "big.txt", f
assert "basis" in f[0]["error"], f' "$output"
}

@test "of several commands that fail, the report names the earliest" {
	# Four patches, every basis wrong: they run two at a time, and the
	# one reported is the first in the pack each time, though it takes the
	# longest to fail (a.txt, the largest).
	mkdir src S
	seq 1 1000000 >src/a.txt
	for f in b c d; do seq 1 30000 >"src/$f.txt"; done
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root S r1
	cm-apply --root S commit.2
	cp -a src new
	for f in a b c d; do sed -i "s/^1000\$/one thousand $f/" "new/$f.txt"; done
	publish 3 3 1 src new
	for f in a b c d; do
		rm "S/versions/1/$f.txt"
		sed 's/^5$/five/' "src/$f.txt" >"S/versions/1/$f.txt"
	done
	# Staged from the spare each time (files are written two at a time
	# on such a run): the site as it is now, spare made, kept to start
	# from again.
	cm-apply status --root S >/dev/null
	cp -a S S.orig
	packtool commands p.3 >cmds
	[ "$(grep -c '^patch ' cmds)" = 4 ]
	first=$(awk '$1 == "patch" { print NR, $2; exit }' cmds)
	[ "${first#* }" = a.txt ]
	for i in 1 2 3 4 5; do
		rm -rf S
		cp -a S.orig S
		run cm-apply --root S --json p.3
		assert_failure
		python3 -c '
import json, sys
r = json.loads(sys.argv[1].splitlines()[0])
f = r["failures"]
assert len(f) == 1, f
assert "%d %s" % (f[0]["command"], f[0]["path"]) == sys.argv[2], (f, sys.argv[2])
assert f[0]["op"] == "patch" and "basis" in f[0]["error"], f
# No command succeeded: none of their data counts.
assert r["data_bytes"] == 0, r
assert r["staged_from"] == "spare", r' "$output" "$first"
		live_is S 1
		[ "$(versions S)" = 1 ]
		no_temps S
	done
}

@test "a second cm-apply on the same site waits, then says busy (exit 7)" {
	base_site
	flock -x S/.cm/lock sleep 1.5 &
	BG=$!
	sleep 0.3
	run cm-apply --root S --wait 0.2 commit.2
	assert_failure 7
	assert_output --partial "busy"
	run cm-apply --root S --wait 10 commit.2
	assert_success
	wait "$BG"
	BG=
}

# ---- kills

# GEN A|B DIR: the kill-loop trees. A: 1500 small files in 40 directories
# and 2 MiB of blobs; B (made from a copy of A): a fifth of the files
# changed, a tenth deleted, 200 new ones, 1 MiB of new blobs, a mode change.
GEN=$(
	cat <<'PY'
import os, random, sys
mode, root = sys.argv[1], sys.argv[2]
rnd = random.Random(7)
def w(p, data):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
if mode == "A":
    for i in range(1500):
        w(f"{root}/d{i % 40}/f{i}.txt", (b"file %d " % i) * rnd.randint(10, 200))
    for i in range(2):
        w(f"{root}/big/blob{i}.bin", rnd.randbytes(1 << 20))
else:
    for i in range(0, 1500, 5):
        w(f"{root}/d{i % 40}/f{i}.txt", (b"changed %d " % i) * rnd.randint(10, 200))
    for i in range(1, 1500, 10):
        os.remove(f"{root}/d{i % 40}/f{i}.txt")
    for i in range(200):
        w(f"{root}/new{i % 20}/n{i}.txt", (b"new %d " % i) * rnd.randint(10, 200))
    for i in range(2):
        w(f"{root}/big/nblob{i}.bin", rnd.randbytes(1 << 19))
    os.chmod(f"{root}/d3", 0o700)
PY
)

# ctest cost: 30
@test "kill -9 at random moments, 50 times: live is always exactly the old or the new version" {
	python3 -c "$GEN" A A
	cp -a A B
	python3 -c "$GEN" B B
	listing A >A.list
	listing B >B.list
	mkdir S
	pk --type replicate --id 1 --from A -o a1
	switch commit 2 1
	cm-apply --root S a1
	cm-apply --root S commit.2
	cmp A.list <(listing S/live)
	cm-delta A B | pk --type publish --id 100 --seq 2 --base 1 - -o b
	# How long a publish and a commit take here, on a copy of the site: the
	# kills land at random moments within those. (Staged from a clone of
	# live, as in the loop: after its first rollback the site's spare holds
	# a newer version, of no use to a publish on version 1.) Every unkilled
	# publish below measures again, and a commit that ends before its kill
	# shortens the window: one slow trial on a busy machine made most kills
	# land after the run had ended (6-19 of 50 killed, in 6 of 19 runs).
	cm-apply status --root S >/dev/null
	cp -a S S.trial
	switch commit 99 100
	t0=$(date +%s%N)
	cm-apply --root S.trial --no-spare b >/dev/null
	t1=$(date +%s%N)
	cm-apply --root S.trial commit.99 >/dev/null
	t2=$(date +%s%N)
	pub_ms=$(((t1 - t0) / 1000000)) com_ms=$(((t2 - t1) / 1000000))
	echo "# a publish takes $pub_ms ms here, a commit $com_ms ms" >&3
	cm-apply status --root S.trial >/dev/null
	rm -rf S.trial
	killed=0
	for i in $(seq 1 50); do
		bid=$((100 + i)) cid=$((200 + i)) rid=$((300 + i))
		packtool rewrite b "b.$i" "id:$bid"
		switch commit "$cid" "$bid"
		switch rollback "$rid" 1
		# Odd rounds kill the publish, even rounds the commit (which also
		# deletes an old version), somewhere within the time each takes.
		if [ $((i % 2)) = 1 ]; then
			victim=b.$i maxms=$((pub_ms + 5))
		else
			t0=$(date +%s%N)
			cm-apply --root S "b.$i" >/dev/null
			pub_ms=$((($(date +%s%N) - t0) / 1000000))
			victim=commit.$cid maxms=$((com_ms + 5))
		fi
		cm-apply --root S "$victim" >/dev/null 2>&1 &
		BG=$!
		ms=$((RANDOM % maxms))
		sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
		kill -9 "$BG" 2>/dev/null || true
		rc=0
		wait "$BG" 2>/dev/null || rc=$?
		BG=
		if [ "$rc" = 137 ]; then
			killed=$((killed + 1))
		elif [ "$victim" = "commit.$cid" ] && [ "$ms" -lt "$com_ms" ]; then
			com_ms=$ms
		fi
		listing S/live >now.list
		if ! cmp -s now.list A.list && ! { [ "$victim" = "commit.$cid" ] && cmp -s now.list B.list; }; then
			echo "round $i ($victim, exit $rc): live is neither the old nor the new version"
			readlink S/live
			diff A.list now.list | head -n 20
			return 1
		fi
		# Running the same command again completes the job.
		run cm-apply --root S "$victim"
		if [ "$status" != 0 ]; then
			echo "round $i: running $victim again after a kill (exit $rc) failed:"
			echo "$output"
			cm-apply status --root S
			return 1
		fi
		if [ "$victim" = "b.$i" ]; then
			cmp A.list <(listing S/live)
			cm-apply --root S "commit.$cid" >/dev/null
		fi
		live_is S "$bid"
		listing S/live >now.list
		cmp -s now.list B.list || {
			echo "round $i ($victim, exit $rc): after running it again and the commit, live is not exactly the new version:"
			diff B.list now.list | head -n 20
			return 1
		}
		[ -z "$(find S/versions -mindepth 1 -maxdepth 1 -name '.staging-*')" ]
		cm-apply --root S "rollback.$rid" >/dev/null
		cmp A.list <(listing S/live)
	done
	echo "# $killed of 50 runs were killed while running" >&3
	# The loop tested something: most kills hit a running cm-apply.
	[ "$killed" -ge 20 ]
	# Old versions do not pile up.
	[ "$(find S/versions -mindepth 1 -maxdepth 1 | wc -l)" -le 4 ]
}

# ---- a full disk

@test "a file of someone else's named live is not replaced by the first commit" {
	mksrc src
	mkdir S
	echo "my notes" >S/live
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root S r1
	run cm-apply --root S commit.2
	assert_failure 1
	assert_output --partial "'S/live' is not the symbolic link cm-apply keeps there; move it away first"
	[ "$(cat S/live)" = "my notes" ]
	mv S/live notes
	run cm-apply --root S commit.2
	assert_success
	live_is S 1
}

@test "a full disk: a clear error, live intact, temporaries removed, the space back" {
	MNT=$T/disk
	mkdir "$MNT"
	mount -t tmpfs -o size=3m tmpfs "$MNT"
	mktree src
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root "$MNT" r1
	cm-apply --root "$MNT" commit.2
	cp -a src new
	head -c 4000000 /dev/urandom >new/huge.bin
	echo "also new" >new/zz.txt
	publish 3 3 1 src new
	used=$(df --output=used -B1 "$MNT" | tail -n 1)
	run cm-apply --root "$MNT" p.3
	assert_failure 1
	assert_output --partial "No space left on device"
	live_is "$MNT" 1
	same_tree src "$MNT/live"
	[ "$(versions "$MNT")" = 1 ]
	no_temps "$MNT"
	[ -z "$(find "$MNT" -name '.cm-tmp*' -o -name '.live-*' -o -name '*.tmp*')" ]
	[ "$(df --output=used -B1 "$MNT" | tail -n 1)" = "$used" ]
	run cm-apply status --root "$MNT" --json
	assert_success
	[ "$(jfield "$output" staging)" = "null" ]
	# With room again, the same command completes the job.
	mount -o remount,size=20m "$MNT"
	run cm-apply --root "$MNT" p.3
	assert_success
	assert_output --partial "staged"
	switch commit 4 3
	cm-apply --root "$MNT" commit.4
	same_tree new "$MNT/live"
}

@test "a full disk during a replicate of many files: live intact, nothing left" {
	MNT=$T/disk
	mkdir "$MNT"
	mount -t tmpfs -o size=3m tmpfs "$MNT"
	mktree src
	pk --type replicate --id 1 --from src -o r1
	switch commit 2 1
	cm-apply --root "$MNT" r1
	cm-apply --root "$MNT" commit.2
	mkdir -p many
	for d in $(seq 1 20); do
		mkdir "many/d$d"
		for f in $(seq 1 20); do
			head -c 9000 /dev/urandom >"many/d$d/f$f.bin"
		done
	done
	pk --type replicate --id 3 --from many -o r3
	used=$(df --output=used -B1 "$MNT" | tail -n 1)
	run cm-apply --root "$MNT" r3
	assert_failure 1
	assert_output --partial "No space left on device"
	live_is "$MNT" 1
	same_tree src "$MNT/live"
	[ "$(versions "$MNT")" = 1 ]
	no_temps "$MNT"
	[ "$(df --output=used -B1 "$MNT" | tail -n 1)" = "$used" ]
}

# feed_and_kill PACK BYTES READY: runs `cm-apply --root S` on a pipe that
# gets the first BYTES of PACK and then stays open, so cm-apply waits for
# the rest where those bytes end; once READY (a command) succeeds, kills
# it with -9. Fails if cm-apply was not running any more.
feed_and_kill() {
	rm -f fifo
	mkfifo fifo
	exec 4<>fifo
	cm-apply --root S fifo >apply.out 2>&1 &
	BG=$!
	timeout 20 head -c "$2" "$1" >&4
	local i
	for i in $(seq 1 200); do
		"$3" && break
		sleep 0.05
	done
	"$3" || {
		echo "never ready: $3"
		return 1
	}
	kill -9 "$BG"
	local rc=0
	wait "$BG" 2>/dev/null || rc=$?
	BG=
	exec 4>&-
	[ "$rc" = 137 ] || {
		echo "cm-apply was not running when killed (exit $rc):"
		cat apply.out
		return 1
	}
}

# in_a_file: the applier is writing a file: a temporary name in the
# scratch directory, or (a one-part assignment, written in place in a tree
# that a stopped run leaves for the trash) huge.jpg in the staging tree,
# not yet whole.
in_a_file() {
	[ -n "$(find S/versions -name '.cm-tmp.*' 2>/dev/null)" ] && return 0
	local n
	n=$(stat -c %s S/versions/.staging-3/huge.jpg 2>/dev/null) || return 1
	[ "$n" -gt 0 ] && [ "$n" -lt 3000000 ]
}

# pipe_drained: cm-apply has read everything in the pipe, and had time to
# act on it.
pipe_drained() {
	[ "$(python3 -c '
import array, fcntl, termios
a = array.array("i", [0])
fcntl.ioctl(0, termios.FIONREAD, a)
print(a[0])' <>fifo)" = 0 ] && sleep 0.5
}

@test "a kill while a file is being written, then the same command again: exactly the new tree" {
	base_site
	cp -a src new
	head -c 3000000 /dev/urandom >new/huge.jpg
	echo "small" >new/small.txt
	publish 3 3 1 src new
	feed_and_kill p.3 $(($(stat -c %s p.3) / 2)) in_a_file
	live_is S 1
	same_tree src S/live
	run cm-apply --root S p.3
	assert_success
	assert_output --partial "staged"
	switch commit 4 3
	cm-apply --root S commit.4
	same_tree new S/live
	[ -z "$(find S -name '.cm-tmp.*')" ] || {
		echo "temporary files left in the site:"
		find S -name '.cm-tmp.*'
		return 1
	}
	no_temps S
}

@test "a kill while waiting for the trailer, then the same command again: exactly the new tree" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	feed_and_kill p.3 $(($(stat -c %s p.3) - 1)) pipe_drained
	live_is S 1
	same_tree src S/live
	[ "$(versions S)" = 1 ]
	run cm-apply --root S p.3
	assert_success
	assert_output --partial "staged"
	switch commit 4 3
	cm-apply --root S commit.4
	same_tree new S/live
	[ -z "$(find S -name '.cm-tmp.*')" ]
	no_temps S
}

@test "killed after the staged version was renamed into place but before the state said so" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cp S/.cm/state.json state.before
	cm-apply --root S p.3
	# What the disk holds after such a kill: versions/3 complete, and the
	# state of the moment before the rename (staging 3, applying).
	python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
s["staging"] = {"id": 3, "sequence": 3, "base_id": 1, "type": "publish", "parts_done": 0,
                "phase": "applying", "created_ns": 0}
json.dump(s, open(sys.argv[2], "w"))' state.before S/.cm/state.json
	run cm-apply --root S p.3
	assert_success
	switch commit 4 3
	run cm-apply --root S commit.4
	assert_success
	live_is S 3
	same_tree new S/live
	no_temps S
}

@test "killed after the state named the staged version but before its rename: the next run finishes it" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	# What the disk holds after such a kill: the state names version 3, and
	# its tree still has the staging name.
	mv S/versions/3 S/versions/.staging-3
	switch commit 4 3
	run cm-apply --root S commit.4
	assert_success
	live_is S 3
	same_tree new S/live
	[ "$(versions S)" = "1 3" ]
	no_temps S
}

@test "a staging tree the state does not name (a run killed mid-way) goes; the same assignment again completes" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply status --root S >/dev/null
	# A kill after the spare became the staging tree: the state still
	# names the spare; the next run finds none and makes a new one.
	spare=$(jfield "$(cm-apply status --root S --json)" spare)
	[ "$spare" = 1 ]
	rm -r S/versions/.spare-1
	# Killed while applying: a half-made tree, a temporary in the scratch
	# directory, and a state that does not know of either.
	cp -a src S/versions/.staging-3
	rm S/versions/.staging-3/big.txt
	mkdir -p S/versions/.scratch
	echo partial >S/versions/.scratch/.cm-tmp.killed
	# Another assignment's run removes a tree it does not know ...
	cp -a src S/versions/.staging-9
	run cm-apply --root S commit.2
	assert_success
	assert_output --partial "already-applied"
	[ ! -e S/versions/.staging-9 ]
	[ "$(jfield "$(cm-apply status --root S --json)" spare)" = 0 ]
	# ... and running the killed one again starts it over.
	run cm-apply --root S p.3
	assert_success
	switch commit 4 3
	cm-apply --root S commit.4
	live_is S 3
	same_tree new S/live
	no_temps S
}

@test "a commit to a version whose tree is missing fails and leaves live alone" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	rm -r S/versions/3
	switch commit 4 3
	run cm-apply --root S commit.4
	assert_failure
	no_crash
	# The next open forgets a version whose tree is gone (as a run killed
	# in the middle of its cleanup leaves it): refused as for any other
	# version this server lacks.
	assert_output --partial "has no version 3"
	live_is S 1
	run cm-apply status --root S
	assert_success
	refute_output --partial "version 3"
	live_is S 1
	same_tree src S/live
}

@test "a rollback to a version ahead of live keeps live to go back to" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	switch commit 4 3
	cm-apply --root S commit.4
	cp -a new newer
	echo newer >newer/newer.txt
	publish 5 5 3 new newer
	cm-apply --root S p.5
	switch commit 6 5
	cm-apply --root S commit.6
	switch rollback 7 0
	cm-apply --root S rollback.7
	live_is S 3
	# Undo that rollback: 3 is what live was, and stays to return to.
	switch rollback 8 5
	run cm-apply --root S rollback.8
	assert_success
	live_is S 5
	[ "$(versions S)" = "1 3 5" ]
	switch rollback 9 0
	run cm-apply --root S rollback.9
	assert_success
	live_is S 3
	same_tree new S/live
}

@test "a version whose tree a killed cleanup moved aside is forgotten, not a rollback target" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	switch commit 4 3
	cm-apply --root S commit.4 --no-spare
	# A run killed in its cleanup after it moved version 1 aside and before
	# the state said so: the state still names version 1.
	mv S/versions/1 S/versions/.trash-killed
	switch rollback 5 0
	run cm-apply --root S rollback.5
	assert_failure 1
	no_crash
	assert_output --partial "no earlier version"
	live_is S 3
	same_tree new S/live
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" history)" = "[]" ]
	no_temps S
}

@test "the symlink of a commit killed before its rename is removed by the next run" {
	base_site
	# What a commit killed between its symlink and its rename leaves.
	ln -s versions/1 S/.live-killedrun0
	run cm-apply --root S commit.2
	assert_success
	assert_output --partial "already-applied"
	[ -z "$(find S -maxdepth 1 -name '.live-*')" ]
	live_is S 1
}

@test "a state a run killed before naming it is removed by the next run, and not read" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	# What a run killed while saving the state leaves: the next state,
	# written beside state.json under a temporary name, not renamed.
	sed 's/"live": 1/"live": 3/' S/.cm/state.json >S/.cm/.state.json.tmp.killed
	run cm-apply --root S p.3
	assert_success
	assert_output --partial "staged"
	[ -z "$(find S/.cm -maxdepth 1 -name '.state.json.tmp.*')" ]
	live_is S 1
	[ "$(versions S)" = "1 3" ]
}

@test "a full disk while the staging tree is cloned: nothing left, the space back" {
	MNT=$T/disk
	mkdir "$MNT"
	mkdir -p dirs
	for d in $(seq 1 60); do
		mkdir "dirs/d$d"
		echo "$d" >"dirs/d$d/f"
	done
	# Room for the files of two versions, but not for the directories of
	# a third: the clone of a publish runs out of inodes.
	mount -t tmpfs -o size=20m,nr_inodes=170 tmpfs "$MNT"
	pk --type replicate --id 1 --from dirs -o r1
	switch commit 2 1
	cm-apply --root "$MNT" --no-spare r1
	cm-apply --root "$MNT" --no-spare commit.2
	cp -a dirs dirs2
	echo changed >dirs2/d1/f
	publish 3 3 1 dirs dirs2
	used=$(df --output=iused "$MNT" | tail -n 1)
	run cm-apply --root "$MNT" --no-spare p.3
	assert_failure 1
	no_crash
	assert_output --partial "No space left on device"
	live_is "$MNT" 1
	same_tree dirs "$MNT/live"
	no_temps "$MNT"
	[ "$(df --output=iused "$MNT" | tail -n 1)" = "$used" ]
	run cm-apply status --root "$MNT" --json
	assert_success
	[ "$(jfield "$output" staging)" = "null" ]
}

@test "a scratch directory that cannot be opened: the staging tree goes, the assignment can come again" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	# A file where the site's scratch directory goes: the run fails after
	# the staging tree was made from the spare (or a clone).
	rm -rf S/versions/.scratch
	echo in the way >S/versions/.scratch
	run cm-apply --root S p.3
	assert_failure 1
	no_crash
	assert_output --partial "S/versions/.scratch"
	live_is S 1
	same_tree src S/live
	no_temps S
	run cm-apply status --root S --json
	assert_success
	[ "$(jfield "$output" staging)" = "null" ]
	rm S/versions/.scratch
	run cm-apply --root S p.3
	assert_success
	switch commit 4 3
	cm-apply --root S --no-spare commit.4
	live_is S 3
	same_tree new S/live
}

@test "an assignment older than every one the state remembers is refused as a replay" {
	base_site
	mkchange src new
	publish 3 3 1 src new
	cm-apply --root S p.3
	switch commit 4 3
	# (No spare: its background run would save the state over the edit.)
	cm-apply --root S --no-spare commit.4
	# What the state holds once a thousand newer assignments have pushed
	# ids up to 4 out of its memory.
	python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
s["applied"] = [a for a in s["applied"] if a["id"] > 4]
s["forgotten"] = 4
json.dump(s, open(sys.argv[1], "w"))' S/.cm/state.json
	# An old commit to version 1 would switch live back: refused.
	run cm-apply --root S commit.2
	assert_failure 1
	no_crash
	assert_output --partial "refused as a replay"
	live_is S 3
	# An old publish whose version is still here: already applied.
	run cm-apply --root S p.3
	assert_success
	assert_output --partial "already-applied"
	# A new one goes on.
	switch rollback 5 0
	run cm-apply --root S --no-spare rollback.5
	assert_success
	live_is S 1
}

@test "the leftovers of a killed run (a half-deleted version) are removed by the next run" {
	base_site
	# A kill while a dropped version was being deleted leaves it in the trash;
	# a run that finds nothing to do must still finish deleting it.
	mkdir -p S/versions/.trash-killedrun/a
	echo "half deleted" >S/versions/.trash-killedrun/a/f
	run cm-apply --root S commit.2
	assert_success
	assert_output --partial "already-applied"
	no_temps S
}

@test "a negative --wait is a usage error, not read as no wait" {
	run cm-apply --root S --wait -1 x
	assert_failure 2
	assert_output --partial "--wait must not be negative (got '-1')"
	run cm-apply --root S --wait -0.5 x
	assert_failure 2
	assert_output --partial "--wait must not be negative (got '-0.5')"
	# Nothing was created by a refused command line.
	[ ! -e S ]
}
