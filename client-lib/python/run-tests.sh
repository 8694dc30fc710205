#!/usr/bin/env bash
# Builds libshmkafka, shmkafkad and the verifying consumer, installs the
# Python package into a fresh venv with pytest, and runs its tests.
#   client-lib/python/run-tests.sh [pytest args...]
# Honours CARGO_TARGET_DIR, CARGO_PROFILE (default: dev, as `cargo test`)
# and SHMKAFKAD_BIN (use that daemon instead of building one).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
export PATH="$HOME/.cargo/bin:$PATH"

profile="${CARGO_PROFILE:-dev}"
if [ -z "${SHMKAFKAD_BIN:-}" ]; then  # set it to test against another daemon build
    cargo build --profile "$profile" -p shmkafkad --bin shmkafkad
fi
cargo build --profile "$profile" -p shmkafka-ffi --lib --example consume-json
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
out="$target_dir/$([ "$profile" = dev ] && echo debug || echo "$profile")"

export SHMKAFKA_LIB="$out/libshmkafka.so"
export SHMKAFKAD_BIN="${SHMKAFKAD_BIN:-$out/shmkafkad}"
export SHMKAFKA_CONSUME_BIN="$out/examples/consume-json"

venv="$target_dir/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        echo "python3 -m venv failed; on Debian/Ubuntu install python3-venv" >&2
        exit 1
    }
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# A real (non-editable) install, as a user would do it.
"$venv/bin/python" -m pip install --quiet --force-reinstall "${here}[test]"
cd "$here"  # pytest imports the installed package, not src/
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
