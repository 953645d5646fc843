#!/usr/bin/env bats
# cm-delta as a program: arguments, output, odd names, bad input.

load helper

@test "--help and --version" {
	run cm-delta --help
	assert_success
	assert_output --partial "usage: cm-delta [options] SHADOW STAGING"
	assert_output --partial "--exclude-from"
	run cm-delta --version
	assert_success
	assert_output --regexp '^cm-delta \(cm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run cm-delta show --help
	assert_success
	assert_output --partial "usage: cm-delta show"
}

@test "usage errors exit 2 with a hint" {
	run cm-delta onlyone
	assert_failure 2
	assert_output --partial "cm-delta: missing arguments"
	assert_output --partial "Try 'cm-delta --help'"
	run cm-delta --no-such-option a b
	assert_failure 2
	assert_output --partial "cm-delta: unrecognised option"
	run cm-delta -v -q a b
	assert_failure 2
	mkdir a b
	run cm-delta --threads 0 a b
	assert_failure 2
	assert_output --partial "--threads must be between 1 and 64"
}

@test "output that cannot be written is an error, not exit 0" {
	mkdir a b
	echo x >b/f
	for args in "--stat a b -o t" "-n a b" "show t" "--version" "--help"; do
		# shellcheck disable=SC2086 # word splitting wanted
		run cm-delta $args
		assert_success
		run sh -c "cm-delta $args >/dev/full"
		assert_failure 1
		assert_output --partial "cm-delta: cannot write to standard output"
		# Said once.
		[ "$(echo "$output" | grep -c 'cannot write to standard output')" = 1 ]
	done
}

@test "--threads does not change the table" {
	mktree a
	# No x in them: the x written below always changes the file.
	for i in $(seq 1 30); do head -c $((4000 + i)) /dev/urandom | tr x y >"a/f$i"; done
	cp -a a b
	printf 'x' | dd of=b/f7 bs=1 seek=100 conv=notrunc 2>/dev/null
	printf 'x' | dd of=b/f23 bs=1 seek=3000 conv=notrunc 2>/dev/null
	find b -type f -exec touch -d '2030-01-01' {} +
	cm-delta --no-manifest --threads 1 a b -o t1
	cm-delta --no-manifest --threads 4 a b -o t4
	cmp t1 t4
	run table_ops t4
	assert_output "$(printf 'patch f23\npatch f7')"
}

@test "identical trees give an empty table" {
	mktree a
	cp -a a b
	cm-delta a b -o t
	run table_ops t
	assert_success
	assert_output ""
	run cm-delta show t
	assert_output --partial "# 0 entries, 0 bytes of data; checksum verified"
}

@test "new, changed, deleted, symlink and type changes are all listed" {
	mktree a
	cp -a a b
	echo new >b/new.txt
	printf '<html>changed</html>\n' >b/index.html
	rm b/css/site.css
	rm b/home.html && ln -s css b/home.html
	rm -r b/img && echo "now a file" >b/img
	cm-delta a b -o t
	run table_ops t
	assert_success
	assert_output "delete css/site.css
symlink home.html
delete img/logo.png
delete img
file img
file index.html
file new.txt"
}

@test "a rebuild that only touches mtimes sends nothing" {
	mktree a
	cp -a a b
	find b -type f -exec touch -d '2030-01-01' {} +
	run cm-delta --stat a b -o t
	assert_success
	assert_output --partial "files: 0 added, 0 changed, 0 deleted"
	assert_output --partial "data: 0 bytes to send"
}

@test "a mode-only change is a chmod without data" {
	mktree a
	cp -a a b
	chmod 600 b/index.html
	cm-delta a b -o t
	run cm-delta show --json t
	assert_output '{"mode":"0600","op":"chmod","path":"index.html"}'
}

@test "a moved file is sent as a reference, not as data" {
	mktree a
	cp -a a b
	mv b/img/logo.png b/logo-moved.png
	run cm-delta --stat --json a b -o t
	assert_success
	run python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(s["data_bytes"], s["sent"]["copy"])' "$output"
	assert_output "0 1"
	run cm-delta show t
	assert_output --partial "same as img/logo.png"
}

@test "a hash-renamed asset is a delta against the old name" {
	mkdir a b
	seq 1 20000 >a/app.3f2a9c81.js
	sed 's/^12345$/changed/' a/app.3f2a9c81.js >b/app.88bb0177.js
	cm-delta a b -o t
	run cm-delta show --json t
	assert_output --partial '"op":"patch"'
	assert_output --partial '"source":"app.3f2a9c81.js"'
	size=$(cm-delta show --json t | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "patch" in l][0]["data_bytes"])')
	[ "$size" -lt 1000 ]
}

@test "a large sparse file with a small change gives a small delta" {
	mkdir a b
	truncate -s 1G a/disk.img
	printf 'header' | dd of=a/disk.img conv=notrunc status=none
	cp --sparse=always a/disk.img b/disk.img
	printf 'CHANGED' | dd of=b/disk.img bs=1 seek=500000000 conv=notrunc status=none
	touch -d '2031-01-01' b/disk.img
	run /usr/bin/time -f 'rss=%M' cm-delta --stat --json a b -o t
	assert_success
	data=$(echo "$output" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["data_bytes"])')
	[ "$data" -lt 16384 ] || { echo "delta too large: $data"; false; }
	rss=$(echo "$output" | sed -n 's/^rss=//p')
	[ "$rss" -lt 65536 ] || { echo "resident set too large: ${rss} KiB"; false; }
	run cm-delta show t
	assert_output --partial "patch"
}

@test "odd file names survive: spaces, newlines, leading dashes, non-UTF-8" {
	mkdir -- -a b
	printf 'x' >"b/with space"
	printf 'x' >"b/new
line"
	printf 'y' >"b/-rf"
	printf 'z' >"b/$(printf 'caf\xe9')"
	cm-delta -o t -- -a b
	run cm-delta show t
	assert_success
	assert_output --partial '"new\nline"'
	assert_output --partial 'with space'
	assert_output --partial -- '-rf'
	assert_output --partial '"caf\351"'
	run cm-delta show --json t
	assert_output --partial '"path_base64":"Y2Fm6Q=="'
	# --paths: the names byte for byte; -z: NUL-terminated, any name.
	cm-delta show --paths -z t >paths0
	python3 - <<'PY'
names = open("paths0", "rb").read().split(b"\0")
assert names[-1] == b"", names
assert sorted(names[:-1]) == sorted([b"with space", b"new\nline", b"-rf", b"caf\xe9"]), names
PY
	cm-delta show --paths t >paths
	grep -qx -- '-rf' paths
	grep -qx 'with space' paths
	grep -qx "$(printf 'caf\xe9')" paths
	run cm-delta show -z t
	assert_failure 2
	assert_output --partial "-z goes with --paths"
}

@test "-v lists each entry on stderr" {
	mkdir a
	mktree b
	cm-delta -v a b -o t 2>err
	run cat err
	assert_line --regexp "^cm-delta: file    0644 index.html \\([0-9.]+ KiB\\)$"
	assert_line --partial "cm-delta: symlink      home.html -> index.html"
	cm-delta -q a b -o t 2>err
	[ ! -s err ]
}

@test "output is deterministic" {
	mktree a
	cp -a a b
	echo more >>b/index.html
	echo new >b/new
	cm-delta a b -o t1 --no-manifest
	cm-delta a b -o t2 --no-manifest
	cmp t1 t2
	cm-delta a b >t3
	cmp t1 t3
}

@test "include and exclude follow rsync's first-match rule" {
	mkdir a b
	mkdir b/logs b/cache
	echo 1 >b/logs/keep.log
	echo 2 >b/logs/drop.log
	echo 3 >b/cache/x
	echo 4 >b/page.html
	printf '# comment\n\ncache/\n' >excl
	cm-delta --include keep.log --exclude '*.log' --exclude-from excl a b -o t
	run table_ops t
	assert_output "mkdir logs
file logs/keep.log
file page.html"
}

@test "excluded files are not deleted either" {
	mkdir a b
	echo secret >a/local.conf
	cm-delta --exclude '*.conf' a b -o t
	run table_ops t
	assert_output ""
}

@test "--stat goes to stderr when the table goes to stdout" {
	mkdir a
	mktree b
	cm-delta --stat a b >t 2>err
	run cat err
	assert_output --partial "files: 3 added"
	run cm-delta show t
	assert_success
}

@test "--dry-run prints the summary and writes nothing" {
	mktree b
	mkdir a
	run cm-delta -n --json a b
	assert_success
	echo "$output" | python3 -c 'import json,sys; s=json.loads(sys.stdin.read()); assert s["files"]["added"]==3, s'
	run cm-delta -n a b -o t
	assert_failure 2
	[ ! -e t ]
}

@test "special files are skipped with a warning" {
	mkdir a b
	mkfifo b/pipe
	echo x >b/file
	run cm-delta a b -o t
	assert_success
	assert_output --partial "cm-delta: warning: skipping special file 'b/pipe'"
	run table_ops t
	assert_output "file file"
}

@test "a missing directory is a clear error and writes nothing" {
	mkdir a
	run cm-delta a nowhere -o t
	assert_failure 1
	assert_output "cm-delta: cannot open directory 'nowhere': No such file or directory"
	[ ! -e t ]
	ls -A >listing
	run cat listing
	refute_output --partial ".tmp"
}

@test "-o to a device, through a symlink, or to a directory: nothing is replaced" {
	mkdir a b
	echo x >b/f
	# A device is written in place: renaming over it would replace the
	# device node (as root, -o /dev/null would destroy /dev/null).
	mknod -m 666 nul c 1 3
	run cm-delta a b -o nul
	assert_success
	[ -c nul ]
	run cm-delta --manifest nul -n a b
	[ -c nul ]
	# Through a symbolic link the file it names is written; the link stays.
	echo old >real
	ln -s real link
	run cm-delta a b -o link
	assert_success
	[ -L link ]
	run cm-delta show real
	assert_success
	assert_output --partial "file    0644 f (2 B)"
	ln -s missing dangling
	run cm-delta a b -o dangling
	assert_failure 1
	assert_output "cm-delta: cannot write to 'dangling': a symbolic link to a file that does not exist"
	mkdir dir
	run cm-delta a b -o dir
	assert_failure 1
	assert_output "cm-delta: cannot write to 'dir': Is a directory"
	run cm-delta a b -o ''
	assert_failure 2
	assert_output "cm-delta: an empty file name to write to"
	[ -z "$(find . -name '.*.tmp.*')" ]
}

@test "a file instead of a directory is a clear error" {
	mkdir a
	echo x >f
	run cm-delta a f -o t
	assert_failure 1
	assert_output "cm-delta: 'f' is not a directory"
}

@test "permission denied names the path" {
	mkdir -p a b/locked
	echo x >b/locked/f
	chmod 000 b/locked
	# root reads anything: drop to nobody (setpriv is in util-linux).
	if [ "$(id -u)" -eq 0 ]; then
		run setpriv --reuid=65534 --regid=65534 --clear-groups cm-delta -n a b
	else
		run cm-delta -n a b
	fi
	chmod 755 b/locked
	assert_failure 1
	assert_output --partial "cannot open directory 'b/locked': Permission denied"
}

@test "a binary table is not written to a terminal" {
	mkdir a b
	run script -qec "cm-delta a b" /dev/null
	assert_output --partial "refusing to write a binary delta table to a terminal"
}

@test "show rejects truncated, corrupt and foreign input" {
	mktree a
	mkdir b
	cm-delta b a -o t
	head -c 100 t >short
	run cm-delta show short
	assert_failure 3
	assert_output --partial "truncated"
	cp t flipped
	printf '\xff' | dd of=flipped bs=1 seek=60 conv=notrunc status=none
	run cm-delta show flipped
	assert_failure 3
	echo "hello" >text
	run cm-delta show text
	assert_failure 3
	assert_output --partial "not a cm delta table"
	run cm-delta show nowhere
	assert_failure 1
	assert_output "cm-delta: cannot open 'nowhere': No such file or directory"
}

@test "show reads standard input" {
	mktree a
	mkdir b
	cm-delta b a | cm-delta show - >out
	run cat out
	assert_output --partial "file    0644 index.html"
}

@test "the manifest caches the shadow's hashes beside it" {
	mktree a
	cp -a a b
	# A changed file: its basis's hash is what the manifest learns (a file
	# of the same size is compared byte by byte, no hash needed).
	printf '<p>more</p>\n' >>b/index.html
	find b -type f -exec touch -d '2030-01-01' {} +
	# Files changed within the last two seconds are never cached (a change
	# in the same clock tick would go unseen).
	sleep 2.1
	cm-delta a b -o t
	[ -f a.cm-manifest ]
	cm-delta --manifest m a b -o t
	[ -f m ]
	echo garbage >m
	run cm-delta --manifest m a b -o t
	assert_success
	assert_output --partial "warning: 'm': not a cm manifest; rebuilding it"
	rm -f a.cm-manifest
	cm-delta --no-manifest a b -o t
	[ ! -e a.cm-manifest ]
}

@test "a file changing during the scan exits 5 and leaves no table" {
	mkdir a b
	head -c 50000000 /dev/zero >b/growing
	( for i in $(seq 1 200); do echo more >>b/growing; sleep 0.01; done ) &
	writer=$!
	status=0
	for i in 1 2 3 4 5 6 7 8 9 10; do
		cm-delta --no-manifest a b -o t 2>err || { status=$?; break; }
	done
	kill $writer 2>/dev/null || true
	wait $writer 2>/dev/null || true
	[ "$status" -eq 5 ] || { cat err; echo "exit status $status, wanted 5"; false; }
	grep -q "changed during the scan; run again" err
	[ ! -e t ] || [ "$(cm-delta show t >/dev/null 2>&1; echo $?)" -eq 0 ]
}
