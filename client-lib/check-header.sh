#!/usr/bin/env bash
# Regenerates include/shmkafka.h from src/ffi/ with cbindgen and fails if the
# checked-in header differs (CI). `--write` updates the header instead.
# Installs the pinned cbindgen if it is missing or another version: header
# output differs between cbindgen versions.
set -euo pipefail
cd "$(dirname "$0")"

CBINDGEN_VERSION=0.29.4
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked
fi

header=include/shmkafka.h
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
cbindgen --quiet --config cbindgen.toml --crate shmkafka-client --output "$generated" .

if [ "${1:-}" = "--write" ]; then
    cp "$generated" "$header"
    echo "wrote client-lib/$header"
elif ! diff -u "$header" "$generated"; then
    echo "client-lib/$header is out of date with client-lib/src/ffi/; run client-lib/check-header.sh --write" >&2
    exit 1
else
    echo "client-lib/$header is up to date"
fi
