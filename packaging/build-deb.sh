#!/usr/bin/env bash
# Builds the shmkafkad .deb and lists its contents.
#
#   packaging/build-deb.sh            # -> target/debian/shmkafkad_<version>-1_amd64.deb
#
# Installs cargo-deb if missing (from crates.io, pinned), builds libshmkafka
# and stages it with `make -C client-lib install` (soname links, static
# library, header, pkg-config file), then runs `cargo deb`, which builds the
# daemon in release mode and packs what daemon/Cargo.toml's
# [package.metadata.deb] lists. Honours CARGO_TARGET_DIR.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# Pinned: 3.x needs Rust >= 1.85; --locked builds with its tested lockfile.
CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
# The library paths in daemon/Cargo.toml are Debian's multiarch directory
# for amd64; other architectures need their own asset list.
MULTIARCH="x86_64-linux-gnu"

arch="$(uname -m)"
if [ "$arch" != x86_64 ]; then
    echo "build-deb.sh: packaging is set up for x86_64 only (this is $arch)" >&2
    exit 2
fi

if ! cargo deb --version > /dev/null 2>&1; then
    echo "build-deb.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

target_dir="$(cargo metadata --format-version 1 --no-deps \
    | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"

# Only what the package holds (cargo-deb alone would build the workspace).
cargo build --release -p shmkafkad --bin shmkafkad
stage="$target_dir/release/deb-stage"
rm -rf "$stage"
make -C client-lib install PREFIX=/usr LIBDIR="/usr/lib/$MULTIARCH" DESTDIR="$stage"
lib="$stage/usr/lib/$MULTIARCH"
if [ ! -f "$lib/libshmkafka.so.$version" ]; then
    echo "build-deb.sh: expected $lib/libshmkafka.so.$version; update the library" \
        "file name in daemon/Cargo.toml's [package.metadata.deb] assets" >&2
    exit 1
fi
# The libraries carry the release profile's debug info (5 MB of 6 in the
# shared one); cargo-deb strips only what it built itself.
strip --strip-debug "$lib/libshmkafka.so.$version" "$lib/libshmkafka.a"

# Executables and the shared library are stripped; their debug symbols go
# to a separate -dbgsym.ddeb. cargo-deb prints the package path on stdout.
deb="$(cargo deb -p shmkafkad --no-build --dbgsym | tail -n1)"
echo "built $deb"
# librdkafka links the system's OpenSSL, SASL and zstd, so their security
# updates reach the daemon: the package must depend on them.
depends="$(dpkg-deb -f "$deb" Depends)"
for lib in libssl libsasl2 libzstd; do
    if ! grep -q "$lib" <<< "$depends"; then
        echo "build-deb.sh: $deb does not depend on $lib (Depends: $depends)" >&2
        exit 1
    fi
done
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
