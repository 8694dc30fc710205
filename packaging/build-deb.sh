#!/usr/bin/env bash
# Builds the Debian packages into target/debian/:
#
#   shmkafkad        the daemon, its unit, sysusers/tmpfiles files, the
#                    example configuration and shmkafka-tune
#   libshmkafka0     the shared library (what applications load)
#   libshmkafka-dev  header, pkg-config file, static library, libshmkafka.so
#
# and a -dbgsym package with the debug info of each of the first two.
#
#   packaging/build-deb.sh      # -> target/debian/*_<version>-<revision>_<arch>.deb
#
# cargo builds the daemon and libshmkafka (release); the files go into an
# install tree (`make -C client-lib install` for the library), which
# dpkg-buildpackage packs with debhelper and packaging/debian/.
# Needs dpkg-dev and debhelper. Honours CARGO_TARGET_DIR.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

for tool in dpkg-buildpackage dh; do
    if ! command -v "$tool" > /dev/null; then
        echo "build-deb.sh: $tool not found (apt-get install dpkg-dev debhelper)" >&2
        exit 1
    fi
done

target_dir="$(cargo metadata --format-version 1 --no-deps \
    | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
deb_version="$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)"
if [ "${deb_version%-*}" != "$version" ]; then
    echo "build-deb.sh: packaging/debian/changelog is at $deb_version but Cargo.toml at" \
        "$version; add a changelog entry (dch -v $version-1)" >&2
    exit 1
fi
multiarch="$(dpkg-architecture -q DEB_HOST_MULTIARCH)"

cargo build --release -p shmkafkad --bin shmkafkad -p shmkafka-ffi

work="$target_dir/debian-build"
src="$work/shmkafka-$version"
stage="$src/stage"
rm -rf "$work"
mkdir -p "$stage"
# -L: the unit in packaging/debian/ is a link to systemd/.
cp -rL packaging/debian "$src/debian"
cp README.md "$src/"

make -C client-lib install PREFIX=/usr LIBDIR="/usr/lib/$multiarch" DESTDIR="$stage"
install -D -m 0755 "$target_dir/release/shmkafkad" "$stage/usr/bin/shmkafkad"
install -D -m 0755 sysctl/shmkafka-tune "$stage/usr/sbin/shmkafka-tune"
# The sysctl drop-in is data for shmkafka-tune, not installed into
# /usr/lib/sysctl.d: it would change host-wide TCP settings (and could lower
# values the host raised) on mere installation. `shmkafka-tune apply` writes
# it to /etc/sysctl.d without lowering anything.
install -D -m 0644 sysctl/60-shmkafka.conf "$stage/usr/share/shmkafka/60-shmkafka.conf"
install -D -m 0644 systemd/shmkafka.sysusers "$stage/usr/lib/sysusers.d/shmkafka.conf"
install -D -m 0644 systemd/shmkafka.tmpfiles "$stage/usr/lib/tmpfiles.d/shmkafka.conf"
# Under /etc, so a conffile: kept on upgrade when the administrator changed it.
install -D -m 0644 systemd/shmkafkad.toml "$stage/etc/shmkafka/shmkafkad.toml"

(cd "$src" && dpkg-buildpackage --build=binary --no-sign --no-check-builddeps)

out="$target_dir/debian"
rm -rf "$out"
mkdir -p "$out"
mv "$work"/*.deb "$out"/
for deb in "$out"/*.deb; do
    echo "== $deb"
    dpkg-deb --field "$deb" Package Version Architecture Depends
    dpkg-deb --contents "$deb"
done
