#!/usr/bin/env bash
# Every benchmark scenario behind the README's "Performance" section, in
# one run: tables on stdout, and JSON plus SVG charts under OUTDIR.
#
#   bench/run-all.sh [OUTDIR]          (default: bench-results/<UTC date>)
#
# Takes about 25 minutes on a 2-core machine. Run it on an otherwise idle
# machine: every ratio is taken within one run, but a busy machine moves
# them. Honours CARGO_TARGET_DIR. With QUICK=1 every scenario runs with tiny
# counts (a check that the script works, not a measurement).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
out="${1:-bench-results/$(date -u +%Y-%m-%d)}"
mkdir -p "$out"

cargo build --release -p shmkafkad -p shmkafka-bench
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
bench="$target_dir/release/shmkafka-bench"

quick="${QUICK:-0}"
pick() { if [ "$quick" = 1 ]; then echo "$2"; else echo "$1"; fi; }

{
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} | tee "$out/machine.txt"

run() {
    local name="$1"
    shift
    echo
    echo "== $name: shmkafka-bench $*"
    "$bench" "$@" 2> >(grep -v '^\s*$' >&2) | tee "$out/$name.md"
}

# Hand-off through shared memory, no Kafka.
run handoff handoff --records "$(pick 2000000 100000)" --repeat "$(pick 3 1)" \
    --sizes "$(pick 16,64,256,1024,4096,16384,65536 64)" --threads "$(pick 1,2,4,8 1,2)" \
    --json "$out/handoff.json" --plot "$out"

# Delivered to the broker: 1, 4, 16 client processes, as fast as they can.
run produce produce --sizes "$(pick 64,1024,16384 64)" --clients "$(pick 1,4,16 1,2)" \
    --max-records "$(pick 1000000 20000)" --repeat "$(pick 3 1)" --json "$out/produce.json" --plot "$out/produce"

# 16 client processes at a moderate rate each: what batching across
# processes saves on the host and at the broker.
run produce-paced produce --sizes 64 --clients "$(pick 16 2)" --rate-per-client 20000 \
    --max-records "$(pick 200000 20000)" --repeat "$(pick 3 1)" \
    --variant daemon --variant 'spin50:drain.spin_us=50' \
    --json "$out/produce-paced.json"

# The knobs, each against the defaults in the same run.
run knobs produce --sizes 64 --clients "$(pick 1,4,16 1)" --max-records "$(pick 300000 20000)" --repeat "$(pick 3 1)" \
    --variant daemon \
    --variant 'pinned:drain.cpus=[1];drain.kafka_thread_cpus=[0]' \
    --variant 'spin50:drain.spin_us=50' \
    --variant 'spin500:drain.spin_us=500' \
    --variant 'copied:drain.copy_records=true' \
    --variant 'linger0:kafka.linger.ms=0' \
    --variant 'linger20:kafka.linger.ms=20' \
    --variant 'batch64k:kafka.batch.size=65536' \
    --variant 'sndbuf4m:kafka.socket.send.buffer.bytes=4194304' \
    --variant 'drain2:drain.threads=2' \
    --json "$out/knobs.json" --plot "$out/knobs"

# Enqueue and commit-to-acknowledgement latency, below and at saturation.
run latency latency --records "$(pick 1000000 20000)" --rate 100000 \
    --json "$out/latency.json" --plot "$out"

# Daemon CPU and memory against connected clients.
run scale scale --clients "$(pick 1,16,64,256 1,4)" --seconds "$(pick 10 2)" \
    --json "$out/scale.json" --plot "$out"

echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
echo "results in $out"
