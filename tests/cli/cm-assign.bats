#!/usr/bin/env bats
# cm-assign as a program: every assignment type, the compression policy,
# keys, splitting, reproducibility, and bad input of every kind.

load helper
bats_require_minimum_version 1.5.0

# pack ARGS...: a build with the required options filled in.
pack() {
	cm-assign build --site www --group web "$@"
}

# header PACK: the first JSON line of show --json (the first part's header).
header() {
	cm-assign show --json "$1" | head -n 1
}

# fields JSON NAME...: the named fields of a JSON object, on one line
# (booleans as JSON; "members" as the member names joined by commas).
fields() {
	python3 -c '
import json, sys
j = json.loads(sys.argv[1])
def show(k):
    if k == "members":
        return ",".join(m["name"] for m in j[k])
    v = j[k]
    return json.dumps(v) if isinstance(v, bool) else str(v)
print(" ".join(show(k) for k in sys.argv[2:]))' "$@"
}

# member PACK NAME KEY: a member's stored_bytes or plain_bytes (0 if absent).
member() {
	cm-assign show --json "$1" | python3 -c '
import json, sys
h = json.loads(sys.stdin.readline())
print(sum(m[sys.argv[2]] for m in h["members"] if m["name"] == sys.argv[1]))' "$2" "$3"
}

# sources PACK: "op path from" for each command that takes data, sorted.
sources() {
	cm-assign show --json "$@" | python3 -c '
import json, sys
rows = []
for line in sys.stdin:
    c = json.loads(line)
    if c.get("op") in ("put", "patch"):
        rows.append("%s %s %s" % (c["op"], c["path"], c["from"]))
print("\n".join(sorted(rows)))'
}

# parts FILE...: "name size part last_part id files" for each pack file,
# files being its put and patch commands.
parts() {
	python3 -c '
import json, os, subprocess, sys
for f in sys.argv[1:]:
    out = subprocess.run(["cm-assign", "show", "--json", f], capture_output=True, text=True, check=True).stdout
    lines = [json.loads(l) for l in out.splitlines()]
    h = lines[0]
    files = sum(1 for c in lines[1:] if c.get("op") in ("put", "patch"))
    print(f, os.path.getsize(f), h["part"], json.dumps(h["last_part"]), h["id"], files)' "$@"
}

# no_crash: the last `run` ended with an exit code, not a signal.
no_crash() {
	[ "$status" -lt 128 ] || {
		echo "killed by a signal: status $status"
		return 1
	}
}

# no_output_left NAME: neither NAME, its parts, nor a temporary beside it.
no_output_left() {
	local left
	# shellcheck disable=SC2010 # the names here are the test's own
	left=$(ls -A | grep -E "^(\\.)?$1(\\.[0-9]{3}|\\.tmp.*)?\$" || true)
	[ -z "$left" ] || {
		echo "left behind: $left"
		return 1
	}
}

# A rewriter of packs for the bad-input tests. It understands the frames
# (cm-assign(5)) and the header, and recomputes the trailer when it
# re-encodes, so that only the intended damage is there.
#   frames PACK                 "KIND FRAME_START PAYLOAD_START LENGTH" lines
#   framelen PACK OUT KIND      KIND's length varint made 2^62 (nothing else)
#   overlong PACK OUT KIND      KIND's length varint made 11 bytes of 0xff
#   edit PACK OUT WHAT          a header or command-list field made 2^62
PACKTOOL=$(
	cat <<'EOF'
import hashlib, subprocess, sys

HUGE = 1 << 62

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)

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
    def raw(s, n):
        s.p += n
        return s.d[s.p - n:s.p]

def frames(d):
    r = R(d, 8)
    ver = r.varint()
    out = []
    while r.p < len(d):
        start = r.p
        k = chr(r.u8())
        n = r.varint()
        out.append([k, start, r.p, r.raw(n)])
    return ver, out

def parse_header(b):
    r = R(b)
    h = {"type": r.u8()}
    for f in ("id", "job", "sequence", "base", "part"):
        h[f] = r.varint()
    h["last"] = r.u8()
    for f in ("site", "group"):
        h[f] = r.raw(r.varint())
    h["created"] = r.varint()
    for f in ("target", "commands", "data_bytes", "content_bytes"):
        h[f] = r.varint()
    h["enc"] = r.u8()
    h["encinfo"] = r.raw(15) if h["enc"] else b""
    h["members"] = []
    for _ in range(3):
        fl = r.u8()
        h["members"].append(None if fl == 0 else [fl, r.varint(), r.varint(), r.raw(32)])
    assert r.p == len(b), "header not fully parsed"
    return h

def encode_header(h, site_len=None):
    o = bytearray([h["type"]])
    for f in ("id", "job", "sequence", "base", "part"):
        o += varint(h[f])
    o.append(h["last"])
    o += varint(len(h["site"]) if site_len is None else site_len) + h["site"]
    o += varint(len(h["group"])) + h["group"]
    o += varint(h["created"])
    for f in ("target", "commands", "data_bytes", "content_bytes"):
        o += varint(h[f])
    o.append(h["enc"])
    o += h["encinfo"]
    for m in h["members"]:
        o += b"\0" if m is None else bytes([m[0]]) + varint(m[1]) + varint(m[2]) + m[3]
    return bytes(o)

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

cmd, src = sys.argv[1], sys.argv[2]
d = open(src, "rb").read()
ver, fr = frames(d)
if cmd == "frames":
    for k, start, payload, p in fr:
        print(k, start, payload, len(p))
    sys.exit(0)
dst = sys.argv[3]
if cmd in ("framelen", "overlong"):
    f = [f for f in fr if f[0] == sys.argv[4]][0]
    new = varint(HUGE) if cmd == "framelen" else b"\xff" * 11
    open(dst, "wb").write(d[:f[1] + 1] + new + d[f[2]:])
    sys.exit(0)
assert cmd == "edit"
what = sys.argv[4]
H = [f for f in fr if f[0] == "H"][0]
h = parse_header(H[3])
site_len = None
data = h["members"][2] or h["members"][1]
if what == "none":
    pass
elif what == "command-count":
    h["commands"] = HUGE
elif what == "commands-plain":
    h["members"][0][2] = HUGE
elif what == "data-plain":
    data[2] = HUGE
elif what == "data-stored":
    data[1] = HUGE
elif what == "site-length":
    site_len = HUGE
elif what == "record-length":
    # The first command record's length, inside the zstd command list.
    C = [f for f in fr if f[0] == "C"][0]
    run = lambda args, b: subprocess.run(args, input=b, capture_output=True, check=True).stdout
    plain = run(["zstd", "-dcq"], C[3])
    r = R(plain)
    r.varint()
    plain = varint(HUGE) + plain[r.p:]
    C[3] = run(["zstd", "-cq"], plain)
    h["members"][0][1:] = [len(C[3]), len(plain), hashlib.sha256(C[3]).digest()]
else:
    sys.exit("packtool: unknown edit " + what)
H[3] = encode_header(h, site_len)
write(dst, ver, fr)
EOF
)

packtool() {
	python3 -c "$PACKTOOL" "$@"
}

# flip PACK OUT OFFSET...: PACK with one bit flipped at OFFSET, as OUT; with
# several offsets, one file OUT.OFFSET for each.
flip() {
	python3 -c '
import sys
src, out, offsets = sys.argv[1], sys.argv[2], sys.argv[3:]
for off in offsets:
    d = bytearray(open(src, "rb").read())
    d[int(off)] ^= 0x04
    open(out if len(offsets) == 1 else "%s.%s" % (out, off), "wb").write(d)' "$@"
}

# An update: a -> b with a new, a changed, a deleted file and a stored type.
mkupdate() {
	mktree a
	cp -a a b
	echo new >b/new.txt
	printf '<html>changed %s</html>\n' "$(seq 1 400)" >b/index.html
	rm b/css/site.css
	head -c 2000 /dev/urandom >b/font.woff2
	cm-delta a b -o t
}

@test "--help and --version" {
	run cm-assign --help
	assert_success
	assert_output --partial "usage: cm-assign build --type TYPE --id N --site NAME"
	assert_output --partial "cm-assign verify"
	assert_output --partial "cm-assign keygen"
	run cm-assign --version
	assert_success
	assert_output --regexp '^cm-assign \(cm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run cm-assign build --help
	assert_success
	assert_output --partial "--max-size"
	assert_output --partial "--encrypt-key"
	run cm-assign verify --help
	assert_success
	assert_output --partial "--pubkey"
}

@test "a file name with a newline or an escape sequence is shown C-quoted in errors" {
	run -1 cm-assign show "$(printf 'no\nsuch\033[2J')"
	assert_output 'cm-assign: cannot open "no\nsuch\033[2J": No such file or directory'
	run -1 cm-assign show "$T/missing pack"
	assert_output "cm-assign: cannot open '$T/missing pack': No such file or directory"
}

@test "build without --type, --id, --site or -o is a usage error" {
	mkupdate
	run cm-assign build --id 1 --site www t -o A
	assert_failure 2
	assert_output --partial "cm-assign: build needs --type, --id, --site and -o"
	run cm-assign build --type publish --site www t -o A
	assert_failure 2
	assert_output --partial "needs --type, --id, --site and -o"
	run cm-assign build --type publish --id 1 t -o A
	assert_failure 2
	assert_output --partial "needs --type, --id, --site and -o"
	run cm-assign build --type publish --id 1 --site www t
	assert_failure 2
	assert_output --partial "needs --type, --id, --site and -o"
	run pack --type publish --id 0 t -o A
	assert_failure 2
	assert_output --partial "--id must be greater than 0"
	run pack --type upload --id 1 t -o A
	assert_failure 2
	assert_output --partial "unknown assignment type 'upload'"
	run pack --type publish --id 1 --no-such-option t -o A
	assert_failure 2
	assert_output --partial "unrecognised option"
	assert_output --partial "Try 'cm-assign --help'"
	no_output_left A
}

@test "each type insists on its own source" {
	mkupdate
	run pack --type publish --id 1 -o A
	assert_failure 2
	assert_output --partial "publish takes a delta table"
	run pack --type publish --id 1 --from b -o A
	assert_failure 2
	assert_output --partial "publish takes a delta table"
	run pack --type replicate --id 1 -o A
	assert_failure 2
	assert_output --partial "replicate takes --from DIR"
	run pack --type replicate --id 1 t -o A
	assert_failure 2
	assert_output --partial "replicate takes --from DIR"
	run pack --type restore --id 1 -o A
	assert_failure 2
	assert_output --partial "restore takes --archive FILE"
	run pack --type synchronize --id 1 --from b t -o A
	assert_failure 2
	assert_output --partial "synchronize takes either a delta table or --from DIR"
	run pack --type synchronize --id 1 -o A
	assert_failure 2
	for type in commit rollback remove; do
		run pack --type "$type" --id 1 t -o A
		assert_failure 2
		assert_output --partial "$type carries no data"
	done
	no_output_left A
}

@test "an option that would do nothing for the type is a usage error, not ignored" {
	mkupdate
	# A table is filtered by cm-delta: an --exclude here would be lost.
	run pack --type publish --id 1 --exclude '*.txt' t -o A
	assert_failure 2
	assert_output --partial "--exclude applies to --from DIR only"
	run pack --type publish --id 1 --target 7 t -o A
	assert_failure 2
	assert_output --partial "--target applies to commit and rollback only"
	run pack --type remove --id 1 --target 7 -o A
	assert_failure 2
	assert_output --partial "--target applies to commit and rollback only"
	no_output_left A
	# Where they apply, they still work.
	run pack --type replicate --id 1 --from b --exclude '*.txt' -o A
	assert_success
	run pack --type rollback --id 2 --target 1 -o B
	assert_success
}

@test "-o to a device is written in place, and a pack in parts needs a file" {
	mknod -m 666 nul c 1 3
	run pack --type commit --id 1 -o nul
	assert_success
	[ -c nul ]
	mkdir big
	for i in $(seq 1 12); do head -c 100000 /dev/urandom >"big/f$i"; done
	run pack --type replicate --id 2 --from big --max-size 64K -o nul
	assert_failure 2
	assert_output --partial "cannot write 'nul.001': 'nul' is not a regular file, and this output needs one per part"
	[ -c nul ]
	# Parts beside a symbolic link whose file is on another file system
	# (/dev/shm): written there, where the parts' names are.
	other=$(mktemp -d /dev/shm/cm-assign-test.XXXXXX)
	echo old >"$other/pack"
	ln -s "$other/pack" out.pack
	run pack --type replicate --id 2 --from big --max-size 64K -o out.pack
	rm -rf "$other"
	assert_success
	[ -e out.pack.001 ] && [ -e out.pack.002 ]
	cm-assign show out.pack.001 >/dev/null
}

@test "a negative number for an unsigned option is a usage error, not 2^64 - 1" {
	run pack --type commit --id -1 -o A
	assert_failure 2
	assert_output --partial "cm-assign: --id must not be negative (got '-1')"
	run pack --type commit --id 1 --target -5 -o A
	assert_failure 2
	assert_output --partial "--target must not be negative"
	[ ! -e A ]
}

@test "build refuses names every reader would refuse; verify --json names what failed" {
	for site in "" "a/b" "$(printf 'x%.0s' $(seq 1 300))"; do
		run cm-assign build --type commit --id 2 --site "$site" -o A
		assert_failure 2
		assert_output --partial "--site must be 1 to 255 bytes of UTF-8"
	done
	run cm-assign build --type commit --id 2 --site www --group bad/group -o A
	assert_failure 2
	assert_output --partial "--group must be at most 255 bytes"
	[ ! -e A ]
	pack --type commit --id 2 -o A
	head -c 20 A >A.cut
	run cm-assign verify --json A.cut
	assert_failure 3
	echo "$output" | head -n 1 | python3 -c 'import json,sys; j = json.load(sys.stdin); assert j["ok"] is False and "truncated" in j["error"], j'
	run cm-assign verify --json A
	assert_success
	echo "$output" | python3 -c 'import json,sys; assert json.load(sys.stdin)["ok"] is True'
}

@test "keygen needs a file name" {
	run cm-assign keygen --sign -o ''
	assert_failure 2
	assert_output --partial "keygen -o needs a file name"
	[ -z "$(ls -A)" ]
}

@test "--level and --max-size out of range are usage errors" {
	mkupdate
	for level in 0 20 -3; do
		run pack --type publish --id 1 --level "$level" t -o A
		assert_failure 2
		assert_output --partial -- "--level must be between 1 and 19"
	done
	run pack --type publish --id 1 --max-size 10K t -o A
	assert_failure 2
	assert_output --partial -- "--max-size must be at least 64K"
	run pack --type publish --id 1 --max-size 65535 t -o A
	assert_failure 2
	assert_output --partial -- "--max-size must be at least 64K"
	run pack --type publish --id 1 --max-size 5Q t -o A
	assert_failure 2
	assert_output --partial "bad size unit in '5Q'"
	run pack --type publish --id 1 --max-size 0 t -o A
	assert_failure 2
	assert_output --partial -- "--max-size must be at least 64K"
	for size in abc -1M; do
		run pack --type publish --id 1 --max-size "$size" t -o A
		assert_failure 2
		assert_output --partial "bad size '$size'"
	done
	no_output_left A
	run pack --type publish --id 1 --level 1 --max-size 64K t -o A
	assert_success
}

@test "progress on a terminal only, cleared before anything else is printed" {
	mktree site
	run script -qec "cm-assign build --type replicate --id 1 --site www --from site -o R" /dev/null
	assert_success
	assert_output --regexp 'cm-assign: [0-9]+ entries, [0-9.]+ [KMG]?i?B of data'
	assert_output --regexp 'entries, [0-9.]+ [KMG]?i?B of data; writing part 1'
	# The line is erased at the end: nothing follows the last erase.
	[[ "$output" == *$'\r\e[K' ]]
	cm-assign verify R
	run pack --type replicate --id 1 --from site -o R2
	assert_success
	refute_output --partial "entries,"
}

@test "a binary assignment is not written to a terminal" {
	mkupdate
	run script -qec "cm-assign build --type publish --id 1 --site www t -o -" /dev/null
	assert_output --partial "refusing to write a binary assignment to a terminal"
}

@test "publish from a delta table: header and commands" {
	mkupdate
	run pack --type publish --id 7 --job 3 t -o A
	assert_success
	run fields "$(header A)" type id job sequence base site group part last_part encrypted signed
	assert_output "publish 7 3 7 6 www web 1 true false false"
	run sources A
	assert_output "patch index.html data.zst
put font.woff2 data
put new.txt data.zst"
	run cm-assign show A
	assert_success
	assert_line "assignment 7 (publish), part 1 (last)"
	assert_line --partial "site www, group web, job 3, sequence 7 on 6"
	assert_line --regexp '^  remove +css/site.css$'
	run cm-assign verify A
	assert_success
	assert_output --regexp '^assignment 7 part 1: OK \([0-9]+ commands, 2 files checked, .* unsigned\)$'
	run cm-assign verify --json A
	assert_success
	[ "$(fields "$output" ok)" = true ]
}

@test "publish from a pipe is the same pack as from the file" {
	mkupdate
	export SOURCE_DATE_EPOCH=1700000000
	pack --type publish --id 7 t -o A1
	cm-delta a b | pack --type publish --id 7 - -o A2
	cmp A1 A2
	pack --type publish --id 7 t -o - | cat >A3
	cmp A1 A3
	run cm-assign verify - <A3
	assert_success
}

@test "--seq and --base are recorded" {
	mkupdate
	pack --type publish --id 20 --seq 12 t -o A
	run fields "$(header A)" id sequence base
	assert_output "20 12 11"
	pack --type publish --id 20 --seq 12 --base 9 t -o B
	run fields "$(header B)" id sequence base
	assert_output "20 12 9"
	run cm-assign show B
	assert_output --partial "sequence 12 on 9"
}

@test "a base at or above the sequence is a usage error" {
	mkupdate
	# A version's sequence is greater than its base's: cm-apply would
	# stage a version that does not advance.
	run pack --type publish --id 8 --seq 2 --base 2 t -o P
	assert_failure 2
	assert_output --partial "--base 2 must be less than --seq 2: a version's sequence is greater than its base's"
	run pack --type publish --id 8 --seq 1 --base 2 t -o P
	assert_failure 2
	assert_output --partial "--base 2 must be less than --seq 1"
	# Without --seq the sequence is the id.
	run pack --type publish --id 8 --base 8 t -o P
	assert_failure 2
	assert_output --partial "--base 8 must be less than the sequence 8 (--id, as no --seq is given)"
	run pack --type synchronize --id 4 --base 9 t -o P
	assert_failure 2
	[ ! -e P ]
	# Just below, or 0 (a full tree): taken.
	pack --type publish --id 8 --base 7 t -o P
	pack --type synchronize --id 4 --seq 3 --base 2 t -o S
	pack --type publish --id 8 --seq 2 --base 0 t -o Z
	run fields "$(header Z)" sequence base
	assert_output "2 0"
}

@test "replicate --from DIR is a full tree" {
	mktree site
	mkdir site/empty
	run pack --type replicate --id 3 --from site -o R
	assert_success
	run fields "$(header R)" type id sequence base site group
	assert_output "replicate 3 3 0 www web"
	run sources R
	assert_output "put css/site.css data.zst
put img/logo.png data
put index.html data.zst"
	run cm-assign show R
	assert_output --partial "(a full tree)"
	assert_line --regexp '^  mkdir +0755 empty$'
	assert_line --regexp '^  symlink +home.html -> index.html$'
	run cm-assign verify R
	assert_success
	assert_output --partial "3 files checked"
	run pack --type replicate --id 3 --from nowhere -o R2
	assert_failure 1
	assert_output --partial "nowhere"
	no_output_left R2
}

@test "synchronize from a delta table or from a tree" {
	mkupdate
	run pack --type synchronize --id 4 t -o S1
	assert_failure 2
	assert_output --partial "synchronize from a delta table needs --base"
	run pack --type synchronize --id 4 --base 2 t -o S1
	assert_success
	run fields "$(header S1)" type id base
	assert_output "synchronize 4 2"
	run sources S1
	assert_output --partial "patch index.html"
	cm-assign verify S1
	run pack --type synchronize --id 5 --from b -o S2
	assert_success
	run fields "$(header S2)" type id base
	assert_output "synchronize 5 0"
	run sources S2
	assert_output "put font.woff2 data
put img/logo.png data
put index.html data.zst
put new.txt data.zst"
	cm-assign verify S2
}

@test "restore from a tar.zst and from a plain tar" {
	mktree site
	tar --zstd -cf ck.tar.zst -C site .
	tar -cf ck.tar -C site .
	for archive in ck.tar.zst ck.tar; do
		run pack --type restore --id 6 --archive "$archive" -o "R-$archive"
		assert_success
		run fields "$(header "R-$archive")" type id base
		assert_output "restore 6 0"
		run sources "R-$archive"
		assert_output "put css/site.css data.zst
put img/logo.png data
put index.html data.zst"
		run cm-assign show "R-$archive"
		assert_line --regexp '^  symlink +home.html -> index.html$'
		run cm-assign verify "R-$archive"
		assert_success
		assert_output --partial "3 files checked"
	done
}

@test "restore refuses an archive with a path out of the site" {
	python3 - <<'EOF'
import io, tarfile
def add(t, name, data=b"x\n"):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
with tarfile.open("evil.tar", "w") as t:
    add(t, "ok.txt")
    add(t, "../evil")
with tarfile.open("deep.tar", "w") as t:
    add(t, "a/../../evil")
with tarfile.open("abs.tar", "w") as t:
    add(t, "/etc/evil")
EOF
	run pack --type restore --id 6 --archive evil.tar -o R
	assert_failure 3
	assert_output --partial "unsafe path ../evil in the archive"
	no_output_left R
	run pack --type restore --id 6 --archive deep.tar -o R
	assert_failure 3
	assert_output --partial "unsafe path"
	run pack --type restore --id 6 --archive abs.tar -o R
	assert_failure 3
	assert_output --partial "unsafe path /etc/evil"
	no_output_left R
	run pack --type restore --id 6 --archive missing.tar -o R
	assert_failure 1
	assert_output --partial "missing.tar"
	head -c 5000 /dev/urandom >junk.tar
	run pack --type restore --id 6 --archive junk.tar -o R
	no_crash
	assert_failure 3
	assert_output --partial "is not an archive cm-assign reads"
	no_output_left R
	# A text file is no archive (libarchive's mtree reader would take it
	# for a list of empty files); a cut gzip stream is damaged input.
	echo garbage >text.tar
	run pack --type restore --id 6 --archive text.tar -o R
	assert_failure 3
	assert_output --partial "is not an archive cm-assign reads"
	no_output_left R
	mktree site
	tar -czf ck.tgz -C site .
	head -c 200 ck.tgz >cut.tgz
	run pack --type restore --id 6 --archive cut.tgz -o R
	no_crash
	assert_failure 3
	no_output_left R
	run pack --type restore --id 6 --archive site -o R
	assert_failure 1
	no_output_left R
	# From a named pipe (a stream, opened once).
	mkfifo ck.fifo
	tar -cf ck.fifo -C site . &
	run pack --type restore --id 6 --archive ck.fifo -o R.fifo
	wait
	assert_success
	cm-assign verify R.fifo
	# cpio and zip are read too.
	for f in cpio zip; do
		bsdtar --format "$f" -cf "ck.$f" -C site .
		run pack --type restore --id 6 --archive "ck.$f" -o "R.$f"
		assert_success
		run sources "R.$f"
		assert_output --partial "put index.html data.zst"
		cm-assign verify "R.$f"
	done
}

@test "remove, commit and rollback carry no data" {
	run pack --type remove --id 8 -o RM
	assert_success
	run fields "$(header RM)" type id site group data_bytes members
	assert_output "remove 8 www web 0 commands"
	run pack --type commit --id 9 --target 7 -o C
	assert_success
	run fields "$(header C)" type id target data_bytes members
	assert_output "commit 9 7 0 commands"
	run cm-assign show C
	assert_output --partial "switches to assignment 7"
	run pack --type rollback --id 10 -o RB
	assert_success
	run fields "$(header RB)" type id target data_bytes members
	assert_output "rollback 10 0 0 commands"
	run cm-assign show RB
	assert_output --partial "switches to the default version"
	for p in RM C RB; do
		run cm-assign verify "$p"
		assert_success
		assert_output --partial "OK (0 commands"
	done
}

@test "by default images, fonts and archives are stored, text is compressed" {
	mkdir site
	printf '<p>hi</p>\n' >site/page.html
	printf 'p{}\n' >site/style.css
	printf 'var x;\n' >site/app.js
	printf '{}\n' >site/data.json
	for f in photo.png PHOTO2.JPG pic.jpeg anim.gif font.woff2 font.woff pack.gz pack.zip movie.mp4; do
		head -c 700 /dev/urandom >"site/$f"
	done
	pack --type replicate --id 1 --from site -o A
	run sources A
	assert_output "put PHOTO2.JPG data
put anim.gif data
put app.js data.zst
put data.json data.zst
put font.woff data
put font.woff2 data
put movie.mp4 data
put pack.gz data
put pack.zip data
put page.html data.zst
put photo.png data
put pic.jpeg data
put style.css data.zst"
	[ "$(member A data plain_bytes)" = $((9 * 700)) ]
	[ "$(member A data stored_bytes)" = $((9 * 700)) ]
	cm-assign verify A
}

@test "--store and --compress override the defaults; the first match wins" {
	mkdir site
	printf '<p>hi</p>\n' >site/page.html
	printf 'p{}\n' >site/style.css
	printf 'var x;\n' >site/app.js
	head -c 700 /dev/urandom >site/photo.png
	head -c 700 /dev/urandom >site/font.woff2
	head -c 700 /dev/urandom >site/shot.jpg
	pack --type replicate --id 1 --from site --store '*.html' --compress '*.png, *.jpg' -o A
	run sources A
	assert_output "put app.js data.zst
put font.woff2 data
put page.html data
put photo.png data.zst
put shot.jpg data.zst
put style.css data.zst"
	pack --type replicate --id 1 --from site --store '*.css' --compress '*.css,*.woff2' --store '*.woff2,*.js' -o B
	run sources B
	assert_output "put app.js data
put font.woff2 data.zst
put page.html data.zst
put photo.png data
put shot.jpg data
put style.css data"
	cm-assign verify A
	cm-assign verify B
}

@test "zstd deltas follow the policy like whole files" {
	mkdir a b
	seq 1 3000 | sed 's/^/var line_/' >a/app.js
	sed 's/^var line_1500$/var changed/' a/app.js >b/app.js
	seq 1 3000 | sed 's/^/pixel_/' >a/app.png
	sed 's/^pixel_1500$/changed/' a/app.png >b/app.png
	cm-delta a b -o t
	pack --type publish --id 2 t -o A
	cm-assign show --json A | grep '"op":"patch"' >patches
	run grep -c '"format":"zstd"' patches
	assert_output 2
	run sources A
	assert_output "patch app.js data.zst
patch app.png data"
	pack --type publish --id 2 --store '*.js' --compress '*.png' t -o B
	run sources B
	assert_output "patch app.js data
patch app.png data.zst"
	cm-assign verify A
	cm-assign verify B
}

@test "similar files compress together as one solid stream" {
	mkdir site
	for i in $(seq 1 100); do
		{
			printf '<!doctype html><html><head><title>Post %s</title></head><body>\n' "$i"
			seq 1 60 | sed "s|.*|<p class=\"para\">Paragraph & of post $i.</p>|"
			printf '</body></html>\n'
		} >"site/post-$i.html"
	done
	plain=$(cat site/*.html | wc -c)
	pack --type replicate --id 1 --from site -o A
	[ "$(member A data.zst plain_bytes)" = "$plain" ]
	stored=$(member A data.zst stored_bytes)
	echo "plain $plain, stored $stored"
	[ "$stored" -lt $((plain / 5)) ]
	# ... and to much less than the files compressed one by one.
	zstd -q -19 site/*.html
	each=$(cat site/*.zst | wc -c)
	echo "compressed one by one: $each"
	[ "$stored" -lt $((each / 2)) ]
}

@test "keygen --sign writes a private and a public key" {
	run cm-assign keygen --sign -o ccm
	assert_success
	assert_output --regexp '^signing key [0-9a-f]{16}: ccm.sec \(keep secret\), ccm.pub'
	[ "$(stat -c %a ccm.sec)" = 600 ]
	grep -q 'BEGIN PRIVATE KEY' ccm.sec
	grep -q 'BEGIN PUBLIC KEY' ccm.pub
	run ! grep -q PRIVATE ccm.pub
	sum=$(cat ccm.sec ccm.pub | sha256sum)
	run cm-assign keygen --sign -o ccm
	assert_failure
	no_crash
	assert_output --partial "'ccm.sec' exists; not overwriting a key"
	[ "$(cat ccm.sec ccm.pub | sha256sum)" = "$sum" ]
	run cm-assign keygen --json --sign -o other
	assert_success
	[ "$(fields "$output" private public)" = "other.sec other.pub" ]
	run cm-assign keygen -o x
	assert_failure 2
	assert_output --partial "keygen needs exactly one of --sign and --encrypt, and -o"
	run cm-assign keygen --sign --encrypt -o x
	assert_failure 2
	run cm-assign keygen --sign
	assert_failure 2
	[ ! -e x ]
	[ ! -e x.sec ]
}

@test "keygen --encrypt writes one line of hex, mode 600" {
	run cm-assign keygen --encrypt -o k1
	assert_success
	assert_output --regexp '^encryption key [0-9a-f]{16}: k1 '
	[ "$(stat -c %a k1)" = 600 ]
	[ "$(wc -l <k1)" = 1 ]
	grep -Eqx 'cm-key-v1 [0-9a-f]{64}' k1
	cm-assign keygen --encrypt -o k2 >/dev/null
	run ! cmp -s k1 k2
	cp k1 saved
	run cm-assign keygen --encrypt -o k1
	assert_failure
	no_crash
	assert_output --partial "'k1' exists; not overwriting a key"
	cmp k1 saved
}

@test "a signed pack verifies with the public key" {
	mkupdate
	id=$(fields "$(cm-assign keygen --json --sign -o ccm)" key_id)
	pack --type publish --id 7 --sign-key ccm.sec t -o A
	run cm-assign verify --pubkey ccm.pub A
	assert_success
	assert_output --partial "signature verified"
	run cm-assign show A
	assert_output --partial "signed by key $id (not checked: give --pubkey)"
	run cm-assign show --pubkey ccm.pub A
	assert_output --partial "signed by key $id (verified)"
	run fields "$(cm-assign show --json --pubkey ccm.pub A | head -n 1)" signed signer signature_checked
	assert_output "true $id true"
	# Without --pubkey the structure is still checked, the signature not.
	run cm-assign verify A
	assert_success
	assert_output --partial "signature not checked"
	# A public key cannot sign.
	run pack --type publish --id 8 --sign-key ccm.pub t -o B
	assert_failure
	no_crash
	no_output_left B
}

@test "verify --pubkey refuses unsigned, foreign and tampered packs" {
	mkupdate
	ours=$(fields "$(cm-assign keygen --json --sign -o ccm)" key_id)
	rogue=$(fields "$(cm-assign keygen --json --sign -o rogue)" key_id)
	pack --type publish --id 7 t -o unsigned
	run cm-assign verify --pubkey ccm.pub unsigned
	assert_failure 4
	assert_output --partial "'unsigned': unsigned, and a signature is required"
	pack --type publish --id 7 --sign-key rogue.sec t -o forged
	run cm-assign verify --pubkey ccm.pub forged
	assert_failure 4
	assert_output --partial "'forged': signed by key $rogue, not by $ours"
	run cm-assign show --pubkey ccm.pub forged
	assert_failure 4
	# The header changed after signing: the signature does not hold.
	pack --type publish --id 7 --sign-key ccm.sec t -o A
	read -r _ _ payload _ < <(packtool frames A | grep '^H')
	flip A tampered $((payload + 2))
	run cm-assign verify --pubkey ccm.pub tampered
	assert_failure 4
	assert_output --partial "bad signature"
	run cm-assign show --pubkey ccm.pub tampered
	assert_failure 4
}

@test "an encrypted pack lists its commands only with the key" {
	mkupdate
	cm-assign keygen --encrypt -o k >/dev/null
	pack --type publish --id 7 --encrypt-key k t -o A
	run --separate-stderr cm-assign show A
	assert_success
	assert_output --partial "encrypted (aes-256-gcm) with key"
	assert_output --partial "(the command list is encrypted: give --key to list it)"
	refute_output --partial "new.txt"
	refute_line --regexp '^  (put|patch|remove) '
	run cm-assign show --json A
	assert_success
	[ "${#lines[@]}" = 1 ]
	[ "$(fields "${lines[0]}" encrypted)" = true ]
	run cm-assign show --key k A
	assert_success
	assert_line --regexp '^  put +0644 new.txt '
	assert_line --regexp '^  unpack +data.zst: decrypt \(aes-256-gcm\), then decompress \(zstd\)$'
	refute_output --partial "the command list is encrypted"
}

@test "verify an encrypted pack: no key, wrong key, right key" {
	mkupdate
	cm-assign keygen --encrypt -o k >/dev/null
	cm-assign keygen --encrypt -o wrong >/dev/null
	cm-assign keygen --sign -o ccm >/dev/null
	pack --type publish --id 7 --encrypt-key k --sign-key ccm.sec t -o A
	run cm-assign verify A
	assert_failure 4
	assert_output --partial "encrypted; give --key"
	run cm-assign verify --key wrong A
	assert_failure 4
	assert_output --partial "encrypted for key"
	run cm-assign show --key wrong A
	assert_failure 4
	run cm-assign verify --key k A
	assert_success
	assert_output --partial "decrypted"
	run cm-assign verify --key k --pubkey ccm.pub A
	assert_success
	assert_output --partial "signature verified, decrypted"
	# A key file that is not a key.
	echo "cm-key-v1 1234" >bad
	run cm-assign verify --key bad A
	assert_failure
	no_crash
	assert_output --partial "is not a cm key"
}

@test "an encrypted pack does not show its file names or contents" {
	mkdir site
	printf 'quarterly-payroll-figures %s\n' $(seq 1 300) >site/zq7-payroll-secret.html
	head -c 3000 /dev/urandom >site/zq7-badge.png
	cm-assign keygen --encrypt -o k >/dev/null
	# Stored, not compressed: in the clear, the names and contents show.
	pack --type replicate --id 3 --from site --store '*' -o plain
	[ "$(grep -c zq7 plain)" -ge 1 ]
	[ "$(grep -c quarterly-payroll plain)" -ge 1 ]
	pack --type replicate --id 3 --from site --store '*' --encrypt-key k -o A
	run grep -c zq7 A
	assert_output 0
	run grep -c quarterly-payroll A
	assert_output 0
	run cm-assign show --key k A
	assert_output --partial "zq7-payroll-secret.html"
	cm-assign verify --key k A
}

@test "--max-size splits a tree into parts that verify alone and together" {
	mkdir -p site/img site/txt
	for i in $(seq 1 12); do head -c 20000 /dev/urandom >"site/img/r$i.png"; done
	for i in $(seq 1 20); do seq $((i * 1000)) $((i * 1000 + 1500)) >"site/txt/t$i.txt"; done
	[ "$(du -sb site | cut -f1)" -gt 350000 ]
	run --separate-stderr pack --type replicate --id 5 --from site --max-size 64K -o P
	assert_success
	[ -z "$stderr" ]
	[ ! -e P ]
	n=$(find . -maxdepth 1 -name 'P.*' | wc -l)
	[ "$n" -ge 4 ]
	[ "$(ls P.*)" = "$(seq -f 'P.%03g' 1 "$n")" ]
	run parts P.*
	assert_success
	echo "$output"
	# Numbered from 1, only the last one says so, each at most 64 KiB,
	# and together they hold every file once.
	want=$(for i in $(seq 1 "$n"); do
		if [ "$i" = "$n" ]; then last=true; else last=false; fi
		printf 'P.%03d %s %s 5\n' "$i" "$i" "$last"
	done)
	[ "$(cut -d' ' -f1,3-5 <<<"$output")" = "$want" ]
	while read -r name size _; do
		[ "$size" -le 65536 ] || { echo "$name is $size bytes"; false; }
	done <<<"$output"
	[ "$(awk '{ n += $6 } END { print n }' <<<"$output")" = 32 ]
	for p in P.*; do
		run cm-assign verify "$p"
		assert_success
		assert_output --regexp "^assignment 5 part $((10#${p#P.})): OK "
	done
	run sh -c 'cat P.* | cm-assign verify -'
	assert_success
	[ "${#lines[@]}" = "$n" ]
	assert_line --index $((n - 1)) --regexp "^assignment 5 part $n: OK "
	run sh -c 'cat P.* | cm-assign show -'
	assert_success
	assert_line "assignment 5 (replicate), part 1 (more follow)"
	assert_line "assignment 5 (replicate), part $n (last)"
}

@test "--max-size with -o - writes the parts one after another to stdout" {
	mkdir site
	for i in $(seq 1 10); do head -c 20000 /dev/urandom >"site/r$i.png"; done
	export SOURCE_DATE_EPOCH=1700000000
	pack --type replicate --id 5 --from site --max-size 64K -o P
	n=$(find . -maxdepth 1 -name 'P.*' | wc -l)
	[ "$n" -ge 3 ]
	pack --type replicate --id 5 --from site --max-size 64K -o - >stream
	[ ! -e ./- ]
	cat P.* | cmp - stream
	run cm-assign verify - <stream
	assert_success
	[ "${#lines[@]}" = "$n" ]
	assert_line --index 0 --regexp "^assignment 5 part 1: OK "
	assert_line --index $((n - 1)) --regexp "^assignment 5 part $n: OK "
	run cm-assign show - <stream
	assert_success
	[ "$(grep -c '^assignment 5 (replicate), part [0-9]* (more follow)$' <<<"$output")" = $((n - 1)) ]
	assert_line "assignment 5 (replicate), part $n (last)"
}

@test "a file larger than --max-size is warned about" {
	mkdir -p site/img
	seq 1 100 >site/index.html
	head -c 100000 /dev/urandom >site/img/huge.jpg
	run --separate-stderr pack --type replicate --id 5 --from site --max-size 64K -o P
	assert_success
	run parts P*
	echo "$output"
	[ "$(awk '$2 > 65536' <<<"$output" | wc -l)" = 1 ]
	echo "stderr: $stderr"
	[[ "$stderr" == *"warning: img/huge.jpg ("*") alone is larger than the part size; part "[0-9]*" will be larger"* ]]
}

@test "a file larger than --max-size does not take other files with it" {
	mkdir site
	head -c 30000 /dev/urandom >site/a.png
	head -c 100000 /dev/urandom >site/b-huge.jpg
	head -c 30000 /dev/urandom >site/c.png
	pack --type replicate --id 5 --from site --max-size 64K -o P 2>/dev/null
	run parts P*
	echo "$output"
	[ "$(awk '{ n += $6 } END { print n }' <<<"$output")" = 3 ]
	# An oversized part holds the one file that needs it, alone.
	while read -r name size _ _ _ files; do
		[ "$size" -le 65536 ] || [ "$files" = 1 ] || { echo "$name: $size bytes, $files files"; false; }
	done <<<"$output"
	run sh -c 'cat P.* | cm-assign verify -'
	assert_success
}

@test "a part stream out of order, repeated or mixed is refused" {
	mkdir site
	for i in $(seq 1 8); do head -c 20000 /dev/urandom >"site/r$i.png"; done
	pack --type replicate --id 5 --from site --max-size 64K -o P
	mkupdate
	pack --type publish --id 7 t -o A
	[ -e P.003 ]
	run sh -c 'cat P.002 P.001 P.003 | cm-assign verify -'
	no_crash
	assert_failure 3
	run sh -c 'cat P.001 P.001 P.002 | cm-assign verify -'
	no_crash
	assert_failure 3
	run sh -c 'cat P.001 A | cm-assign verify -'
	no_crash
	assert_failure 3
}

@test "a pack cut short is an error, near the start, in the middle and at the end" {
	mkupdate
	cm-assign keygen --sign -o ccm >/dev/null
	pack --type publish --id 7 --sign-key ccm.sec t -o A
	n=$(stat -c %s A)
	for len in 0 1 7 8 9 10 12 40 80 $((n / 3)) $((n / 2)) $((n - 40)) $((n - 33)) $((n - 1)); do
		head -c "$len" A >short
		for cmd in verify show; do
			run cm-assign "$cmd" --pubkey ccm.pub short
			no_crash
			[ "$status" -eq 3 ] || { echo "$cmd, $len of $n bytes: status $status: $output"; false; }
		done
	done
	head -c 40 A >short
	run cm-assign verify short
	assert_failure 3
	assert_output --partial "truncated"
	run sh -c 'head -c 100 A | cm-assign verify -'
	assert_failure 3
	assert_output --partial "'standard input': truncated"
}

@test "a flipped bit in the header, commands, data or trailer is an error" {
	mkupdate
	pack --type publish --id 7 t -o A
	packtool frames A >frames.txt
	cat frames.txt
	offsets=""
	while read -r kind start payload len; do
		offsets="$offsets $start $payload $((payload + len / 2)) $((payload + len - 1))"
	done <frames.txt
	# shellcheck disable=SC2086
	flip A bad 0 8 $offsets
	for off in 0 8 $offsets; do
		for cmd in verify show; do
			run cm-assign "$cmd" "bad.$off"
			no_crash
			[ "$status" -eq 3 ] || { echo "$cmd, bit flipped at $off: status $status: $output"; false; }
		done
	done
	# The header's part number, 1 -> 5: only the trailer can tell.
	read -r _ _ payload _ < <(grep '^H' frames.txt)
	flip A bad $((payload + 5))
	run cm-assign verify bad
	assert_failure 3
	assert_output "cm-assign: 'bad': trailer checksum mismatch: the header or commands were changed"
	read -r _ _ payload len < <(grep '^C' frames.txt)
	flip A bad $((payload + len / 2))
	run cm-assign verify bad
	assert_failure 3
	assert_output "cm-assign: 'bad': member 'commands' does not match its SHA-256 in the header (corrupt or tampered)"
	read -r _ _ payload len < <(grep '^R' frames.txt)
	flip A bad $((payload + len / 2))
	run cm-assign verify bad
	assert_failure 3
	assert_output --regexp "'bad': (member 'data' does not match its SHA-256|the data of .* does not match its SHA-256)"
	read -r _ _ payload len < <(grep '^T' frames.txt)
	flip A bad $((payload + 1))
	run cm-assign verify bad
	assert_failure 3
	assert_output --partial "trailer checksum mismatch"
}

@test "a foreign file or another version is named as such" {
	mkupdate
	pack --type publish --id 7 t -o A
	cp A badmagic
	printf 'X' | dd of=badmagic bs=1 seek=0 conv=notrunc status=none
	run cm-assign verify badmagic
	assert_failure 3
	assert_output --partial "'badmagic': not a cm assignment"
	run cm-assign show t
	assert_failure 3
	assert_output --partial "not a cm assignment"
	: >empty
	run cm-assign verify empty
	assert_failure 3
	no_crash
	cp A v2
	printf '\002' | dd of=v2 bs=1 seek=8 conv=notrunc status=none
	run cm-assign verify v2
	assert_failure 3
	assert_output --partial "unsupported assignment version 2"
	printf '\177' | dd of=v2 bs=1 seek=8 conv=notrunc status=none
	run cm-assign show v2
	assert_failure 3
	assert_output --partial "unsupported assignment version 127"
}

@test "absurd frame lengths are refused, not allocated" {
	mkupdate
	pack --type publish --id 7 t -o A
	for kind in H C Z R T; do
		packtool framelen A bad "$kind"
		run /usr/bin/time -f 'rss=%M' cm-assign verify bad
		no_crash
		[ "$status" -eq 3 ] || { echo "$kind frame length 2^62: status $status: $output"; false; }
		rss=$(echo "$output" | sed -n 's/^rss=//p')
		[ "$rss" -lt 100000 ] || { echo "$kind: resident set ${rss} KiB"; false; }
		packtool overlong A bad "$kind"
		run cm-assign verify bad
		no_crash
		[ "$status" -eq 3 ] || { echo "$kind frame length overlong: status $status: $output"; false; }
	done
	packtool framelen A bad H
	run cm-assign show bad
	assert_failure 3
	assert_output --partial "header of impossible length"
	packtool overlong A bad C
	run cm-assign show bad
	assert_failure 3
	assert_output --partial "bad frame length"
}

@test "absurd lengths inside the header and the command list are refused" {
	mkupdate
	pack --type publish --id 7 t -o A
	# The rewriter itself changes nothing when asked to change nothing.
	packtool edit A same none
	cmp A same
	for what in command-count commands-plain data-plain data-stored site-length record-length; do
		packtool edit A bad "$what"
		for cmd in verify show; do
			run cm-assign "$cmd" bad
			no_crash
			[ "$status" -eq 3 ] || { echo "$cmd, $what = 2^62: status $status: $output"; false; }
		done
	done
	packtool edit A bad commands-plain
	run cm-assign verify bad
	assert_output --partial "bad header: command list too large"
	packtool edit A bad site-length
	run cm-assign verify bad
	assert_output --partial "bad header"
	packtool edit A bad record-length
	run cm-assign verify bad
	assert_output --partial "command 1: bad record length"
	packtool edit A bad data-stored
	run cm-assign verify bad
	assert_output --partial "frame's length differs from the header"
}

@test "random bytes behind a valid magic never crash a reader" {
	for i in $(seq 1 20); do
		{
			printf 'CMASSIGN\001H'
			head -c $((i * 37)) /dev/urandom
		} >junk
		for cmd in show verify; do
			run cm-assign "$cmd" junk
			no_crash
			[ "$status" -eq 3 ] || { echo "$cmd junk $i: status $status: $output"; false; }
		done
	done
}

@test "bytes after the trailer are refused" {
	mkupdate
	pack --type publish --id 7 t -o A
	{
		cat A
		printf 'garbage'
	} >extra
	run cm-assign verify extra
	assert_failure 3
	assert_output --partial "data after the"
	run cm-assign show extra
	assert_failure 3
	run sh -c 'cm-assign verify - <extra'
	assert_failure 3
}

@test "a missing file is an operational error" {
	run cm-assign verify nothing-here
	assert_failure 1
	assert_output --partial "cannot open 'nothing-here'"
	run cm-assign show nothing-here
	assert_failure 1
	run pack --type publish --id 1 nothing-here -o A
	assert_failure 1
	assert_output --partial "nothing-here"
	no_output_left A
	mkupdate
	run pack --type publish --id 1 --encrypt-key no-key t -o A
	assert_failure
	no_crash
	assert_output --partial "no-key"
	run pack --type publish --id 1 --sign-key no-key.sec t -o A
	assert_failure
	no_crash
	assert_output --partial "no-key.sec"
	no_output_left A
	run pack --type publish --id 1 t -o no-such-dir/A
	assert_failure 1
	assert_output --partial "no-such-dir"
}

@test "a corrupt delta table leaves no output behind" {
	mkupdate
	mkdir spool
	export TMPDIR="$T/spool"
	n=$(stat -c %s t)
	for off in $((n / 2)) $((n - 5)); do
		flip t bad-t "$off"
		run pack --type publish --id 1 bad-t -o A
		no_crash
		[ "$status" -eq 3 ] || { echo "flip at $off: status $status: $output"; false; }
		no_output_left A
		run sh -c 'cm-assign build --type publish --id 1 --site www - -o A <bad-t'
		assert_failure 3
		no_output_left A
	done
	head -c $((n - 10)) t >short-t
	run pack --type publish --id 1 short-t -o A
	assert_failure 3
	assert_output --partial "truncated"
	no_output_left A
	[ -z "$(ls -A spool)" ]
}

@test "a build that fails late writes no parts and keeps an old pack" {
	mkdir a b
	for i in $(seq 1 8); do head -c 20000 /dev/urandom >"b/r$i.png"; done
	cm-delta a b -o t
	n=$(stat -c %s t)
	flip t bad-t $((n - 3))
	run pack --type publish --id 1 --max-size 64K bad-t -o P
	assert_failure 3
	no_output_left P
	pack --type publish --id 1 t -o A
	cp A saved
	run pack --type publish --id 2 missing-table -o A
	assert_failure 1
	cmp A saved
	run pack --type publish --id 2 bad-t -o A
	assert_failure 3
	cmp A saved
	[ -z "$(find . -maxdepth 1 -name '*.tmp*')" ]
}

@test "with SOURCE_DATE_EPOCH two builds are byte-identical" {
	mkupdate
	export SOURCE_DATE_EPOCH=1700000000
	cm-assign keygen --sign -o ccm >/dev/null
	pack --type publish --id 7 t -o A1
	pack --type publish --id 7 t -o A2
	cmp A1 A2
	run cm-assign show A1
	assert_output --partial "created 2023-11-14 22:13:20 UTC"
	pack --type publish --id 7 --sign-key ccm.sec t -o S1
	pack --type publish --id 7 --sign-key ccm.sec t -o S2
	cmp S1 S2
	pack --type replicate --id 8 --from b -o R1
	pack --type replicate --id 8 --from b -o R2
	cmp R1 R2
	# Without it the creation time differs.
	unset SOURCE_DATE_EPOCH
	pack --type publish --id 7 t -o N1
	run ! cmp -s A1 N1
}
