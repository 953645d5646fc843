#!/usr/bin/env bats
# The man pages against the programs: every option a command's --help lists
# is documented in the program's page, and every command is in its
# SYNOPSIS. (An audit found options and a command in --help that no page
# named.)

load helper

# commands PROGRAM: the program's commands, "" for the default one. A
# program without one lists them under "Commands:"; the help of one with a
# default command is that command's, naming the others under "Other
# commands:".
commands() {
	"$1" --help | awk -v p="$1" '
		/^Commands:/ { f = 1; next }
		/^Other commands:/ { o = 1; print ""; next }
		/^$/ { f = 0; o = 0 }
		f && /^  / { print ($1 == "(default)" ? "" : $1) }
		o && $1 == p { print $2 }'
}

@test "every option in every command's --help is in the program's man page" {
	local missing="" p c o page
	for p in cm-delta cm-assign cm-apply cm-push cm-elect cm-mcast cm-sched; do
		page=$CM_SOURCE/man/$p.1
		[ -f "$page" ]
		while IFS= read -r c; do
			# shellcheck disable=SC2086 # no command: no word
			for o in $("$p" $c --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
				case $o in
				# Common to every program: cm(7).
				--help | --version | --verbose | --quiet) continue ;;
				# Pages name it by its short form.
				--output) grep -q 'Fl o\b' "$page" && continue ;;
				esac
				# The whole option: --keep is not documented by --keep-runs.
				grep -Eq -- "Fl ${o#-}( |,|\$)" "$page" || missing="$missing $p${c:+ $c}:$o"
			done
		done < <(commands "$p")
	done
	[ -z "$missing" ] || {
		echo "not in the man page:$missing"
		return 1
	}
}

@test "every command of a program is in its man page's SYNOPSIS" {
	local missing="" p c page synopsis
	for p in cm-delta cm-assign cm-apply cm-push cm-elect cm-mcast cm-sched; do
		page=$CM_SOURCE/man/$p.1
		synopsis=$(sed -n '/^\.Sh SYNOPSIS/,/^\.Sh /p' "$page")
		while IFS= read -r c; do
			[ -n "$c" ] || continue
			grep -q "^\.Cm $c\b" <<<"$synopsis" || missing="$missing $p:$c"
		done < <(commands "$p")
	done
	[ -z "$missing" ] || {
		echo "not in the SYNOPSIS:$missing"
		return 1
	}
}
