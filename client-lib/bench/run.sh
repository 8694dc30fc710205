#!/usr/bin/env bash
# Send-path cost of the Rust API, the C ABI and the Python binding, against
# one shmkafkad with its embedded broker, in one run: records/s written to
# the ring (enqueue), records/s acknowledged by the broker (delivered, flush
# included), and per-call latency of `send`. Not a test; numbers only.
#
#   client-lib/bench/run.sh [RECORDS] [VALUE_LEN] [REPEAT]
#
# The ring (256 MiB) holds every record of a run, so `enqueue` measures the
# call, not back-pressure. Honours CARGO_TARGET_DIR and SHMKAFKAD_BIN.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
records="${1:-500000}"
value_len="${2:-100}"
repeat="${3:-3}"
ring=$((256 << 20))

cargo build --release -p shmkafka-ffi --lib
cargo build --release -p shmkafka-client --example send_bench
if [ -z "${SHMKAFKAD_BIN:-}" ]; then
    cargo build --release -p shmkafkad --bin shmkafkad
fi
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
out="$target_dir/release"
daemon_bin="${SHMKAFKAD_BIN:-$out/shmkafkad}"

work="$(mktemp -d)"
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ln -s "$out/libshmkafka.so" "$work/libshmkafka.so.0"
ln -s "$out/libshmkafka.so" "$work/libshmkafka.so"
gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I client-lib/include client-lib/bench/send_bench.c \
    -o "$work/send_bench_c" -L "$work" -lshmkafka -Wl,-rpath,"$work"

socket="$work/shmkafkad.sock"
mkfifo "$work/stdout"
"$daemon_bin" --embedded-broker --socket "$socket" --log-level warn \
    --embedded-topic bench-rust:16 --embedded-topic bench-c:16 --embedded-topic bench-python:16 \
    >"$work/stdout" 2>"$work/daemon.log" &
daemon_pid=$!
exec 3<"$work/stdout"
read -r ready <&3
echo "# $ready; $records records of 8 + $value_len bytes per run; $(nproc) CPUs" >&2
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done

echo "# $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
for run in $(seq "$repeat"); do
    "$out/examples/send_bench" "$socket" bench-rust "$records" "$value_len" "$ring"
    "$work/send_bench_c" "$socket" bench-c "$records" "$value_len" "$ring"
    SHMKAFKA_LIB="$out/libshmkafka.so" PYTHONPATH="$repo/client-lib/python/src" \
        python3 client-lib/bench/send_bench.py "$socket" bench-python "$records" "$value_len" "$ring"
done
