#!/usr/bin/env bash
# Runs the build commands that produce.c documents for a workspace build,
# exactly as written there, then runs the program against a daemon with its
# embedded test broker: the documented line must work from a fresh checkout.
#
#   client-lib/examples/c/run-documented-build.sh [SHMKAFKAD]
#
# SHMKAFKAD defaults to target/release/shmkafkad. Run from anywhere; the
# commands run from the workspace root, as documented.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root="$PWD"
source_file=client-lib/examples/c/produce.c
daemon="${1:-target/release/shmkafkad}"

# The comment's indented lines after "Without pkg-config", without the
# leading " *", continuation lines joined.
commands="$(sed -n '/Without pkg-config/,/\*\//p' "$source_file" \
    | sed -n 's/^ \*  *\( [^ ]\)/\1/p' | sed 's/^ *//' \
    | sed -e ':a' -e '/\\$/N; s/\\\n */ /; ta')"
if [ -z "$commands" ]; then
    echo "no build commands found in $source_file" >&2
    exit 1
fi

work="$(mktemp -d)"
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -f "$root/produce"
    rm -rf "$work"
}
trap cleanup EXIT

echo "documented commands:"
printf '  %s\n' "$commands"
bash -euxc "$commands"
[ -x ./produce ] || { echo "the documented commands built no ./produce" >&2; exit 1; }

socket="$work/shmkafkad.sock"
"$daemon" --embedded-broker --embedded-topic c-example:2 --socket "$socket" \
    --spool-dir "$work/spool" > "$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
    [ -S "$socket" ] && break
    sleep 0.1
done
[ -S "$socket" ] || { cat "$work/daemon.log" >&2; echo "shmkafkad did not start" >&2; exit 1; }

out="$(./produce c-example 1000 "$socket")"
echo "$out"
case "$out" in
    "1000 records: "*", 0 failed") echo "documented C build works" ;;
    *) echo "unexpected output from ./produce" >&2; exit 1 ;;
esac
