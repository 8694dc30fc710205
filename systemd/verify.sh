#!/usr/bin/env bash
# Checks the unit with systemd-analyze: syntax, directives, and that the
# ExecStart binary exists (pointed at a built shmkafkad). Usage:
#   systemd/verify.sh [path/to/shmkafkad]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$(realpath "${1:-$here/../target/release/shmkafkad}")"
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
fi
[ -x "$binary" ] || { echo "no shmkafkad at $binary (cargo build --release)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#/usr/bin/shmkafkad#$binary#g" "$here/shmkafkad.service" > "$work/shmkafkad.service"
systemd-analyze verify "$work/shmkafkad.service"
systemd-analyze security --offline=yes --threshold=30 "$work/shmkafkad.service" | tail -1
echo "shmkafkad.service verified"
