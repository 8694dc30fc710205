#!/usr/bin/env bash
# Installs the built packages into a fresh Debian root (debootstrap
# --variant=minbase of this host's release; apt fetches their dependencies
# from the Debian mirror) and checks what an operator relies on: an
# application host gets the library without the daemon; the daemon's user,
# group, directories, conffile and permissions; the library's links and
# loader cache; an upgrade keeps the configuration's permissions and the
# administrator's edits; remove keeps the configuration, purge removes it.
# The C example is built against libshmkafka-dev, shared and static.
# No systemd runs in the root, so nothing is started.
#
#   packaging/test-install.sh [dir]      # default: target/debian
#
# Needs root and debootstrap. SHMKAFKA_TEST_MIRROR overrides the mirror
# (default http://deb.debian.org/debian). Takes one to two minutes.

# dpkg-query formats and the perl code are meant literally (SC2016).
# shellcheck disable=SC2016
set -euo pipefail

source_dir="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(realpath "${1:-target/debian}")"
mirror="${SHMKAFKA_TEST_MIRROR:-http://deb.debian.org/debian}"

if [ "$(id -u)" != 0 ]; then
    echo "test-install.sh: needs root (debootstrap, chroot)" >&2
    exit 2
fi
if ! command -v debootstrap > /dev/null; then
    echo "test-install.sh: debootstrap not found (apt-get install debootstrap)" >&2
    exit 2
fi
# The packages depend on the library versions of the release they were
# built on; install them into that release.
# shellcheck source=/dev/null
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
if [ -z "$suite" ]; then
    echo "test-install.sh: no VERSION_CODENAME in /etc/os-release" >&2
    exit 2
fi
declare -A deb=()
for file in "$dir"/*.deb; do
    [ -e "$file" ] || continue
    deb[$(dpkg-deb --field "$file" Package)]="$file"
done
for package in shmkafkad libshmkafka0 libshmkafka-dev; do
    if [ -z "${deb[$package]:-}" ]; then
        echo "test-install.sh: no package $package in $dir (found: ${!deb[*]})" >&2
        exit 1
    fi
done
version="$(dpkg-deb --field "${deb[shmkafkad]}" Version)"
multiarch="$(dpkg-architecture -q DEB_HOST_MULTIARCH)"
libdir="/usr/lib/$multiarch"

root="$(mktemp -d /var/tmp/shmkafka-install-test.XXXXXX)"
# The root's / as on any system (mktemp made it 0700): other users run in it.
chmod 0755 "$root"
cleanup() {
    umount "$root/proc" 2> /dev/null || true
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT

failures=0
fail() {
    echo "test-install.sh: FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }
in_root() { chroot "$root" "$@"; }
export DEBIAN_FRONTEND=noninteractive
apt_in_root() { in_root apt-get -q -y -o Dpkg::Use-Pty=0 "$@"; }

# expect <description> <command>...: the command succeeds in the root.
expect() {
    local what="$1" output
    shift
    if output="$(in_root "$@" 2>&1)"; then pass "$what"; else fail "$what: $output"; fi
}
# expect_not <description> <command>...: the command fails in the root.
expect_not() {
    local what="$1"
    shift
    if in_root "$@" > /dev/null 2>&1; then fail "$what"; else pass "$what"; fi
}
# expect_stat <path> <mode owner group>
expect_stat() {
    local got
    got="$(in_root stat -c '%a %U %G' "$1" 2> /dev/null || echo missing)"
    if [ "$got" = "$2" ]; then pass "$1: $got"; else fail "$1 is '$got', expected '$2'"; fi
}
# expect_link <path> <target>
expect_link() {
    local got
    got="$(in_root readlink "$1" || true)"
    if [ "$got" = "$2" ]; then pass "$1 -> $2"; else fail "$1 links to '${got:-nothing}', expected $2"; fi
}
installed() {
    [ "$(in_root dpkg-query -W -f '${db:Status-Status}' "$1" 2> /dev/null)" = installed ]
}
in_loader_cache() {
    # /lib is /usr/lib on a merged-/usr system: the cache may name either.
    # Not `grep -q`: it stops at the first match, and under pipefail the
    # SIGPIPE this gives ldconfig would fail the pipeline now and then.
    in_root ldconfig -p | grep "libshmkafka.so.0 .*=> \(/usr\)\?/lib/$multiarch/libshmkafka.so.0\$" > /dev/null
}

echo "== debootstrap $suite into $root"
start=$SECONDS
debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.debootstrap.log" 2>&1 || {
    cat "$root.debootstrap.log" >&2
    rm -f "$root.debootstrap.log"
    exit 1
}
rm -f "$root.debootstrap.log"
mount -t proc proc "$root/proc"
mkdir "$root/debs"
cp "${deb[shmkafkad]}" "${deb[libshmkafka0]}" "${deb[libshmkafka-dev]}" "$root/debs/"
apt_in_root update > /dev/null
echo "($((SECONDS - start)) s)"

echo "== an application host: libshmkafka0 alone"
apt_in_root install "/debs/$(basename "${deb[libshmkafka0]}")"
if installed shmkafkad; then fail "libshmkafka0 pulled in shmkafkad"; else pass "shmkafkad not installed"; fi
for package in libssl3 libsasl2-2 systemd; do
    if installed "$package"; then
        fail "libshmkafka0 pulled in $package (the daemon's dependency)"
    else
        pass "$package not installed"
    fi
done
so_file="$(dpkg-deb --contents "${deb[libshmkafka0]}" | grep -o 'libshmkafka\.so\.[0-9]*\.[0-9]*\.[0-9]*$' | head -n1 || true)"
expect_link "$libdir/libshmkafka.so.0" "$so_file"
if in_loader_cache; then
    pass "the loader cache has libshmkafka.so.0 (ldconfig trigger)"
else
    fail "libshmkafka.so.0 is not in the loader cache (ldconfig -p): no ldconfig trigger?"
fi
# A program loads the library by its soname and finds its entry points.
expect "dlopen(libshmkafka.so.0) finds shmkafka_producer_connect" perl -MDynaLoader -e '
    my $lib = DynaLoader::dl_load_file("libshmkafka.so.0") or die DynaLoader::dl_error();
    DynaLoader::dl_find_symbol($lib, "shmkafka_producer_connect") or die DynaLoader::dl_error();'

echo "== the daemon host: shmkafkad and libshmkafka-dev"
apt_in_root install "/debs/$(basename "${deb[shmkafkad]}")" "/debs/$(basename "${deb[libshmkafka-dev]}")"
passwd_entry="$(in_root getent passwd shmkafka || true)"
IFS=: read -r _ _ uid gid _ home shell <<< "$passwd_entry"
if [ -n "$passwd_entry" ] && ((uid < 1000)) && [ "$home" = /var/lib/shmkafka ] \
    && [ "$shell" = /usr/sbin/nologin ]; then
    pass "system user shmkafka: $passwd_entry"
else
    fail "user shmkafka should be a system user (uid < 1000) with home /var/lib/shmkafka and" \
        "shell /usr/sbin/nologin: '$passwd_entry'"
fi
group_entry="$(in_root getent group shmkafka || true)"
if [ -n "$group_entry" ] && [ "$(cut -d: -f3 <<< "$group_entry")" = "$gid" ]; then
    pass "group shmkafka is the user's primary group: $group_entry"
else
    fail "group shmkafka missing or not the user's primary group: '$group_entry'"
fi
expect_stat /etc/shmkafka "750 root shmkafka"
expect_stat /etc/shmkafka/shmkafkad.toml "640 root shmkafka"
expect_stat /var/lib/shmkafka "750 shmkafka shmkafka"
expect_stat /var/lib/shmkafka/spool "750 shmkafka shmkafka"
if in_root dpkg-query -W -f '${Conffiles}' shmkafkad | grep '^ /etc/shmkafka/shmkafkad.toml ' > /dev/null; then
    pass "/etc/shmkafka/shmkafkad.toml is a conffile"
else
    fail "/etc/shmkafka/shmkafkad.toml is not a conffile of shmkafkad"
fi
# Every library the daemon links resolved through the package's Depends,
# and the daemon's user reads its configuration.
expect "shmkafkad --version runs" /usr/bin/shmkafkad --version
expect "the example configuration passes --check-config as user shmkafka" \
    setpriv --reuid shmkafka --regid shmkafka --clear-groups \
    /usr/bin/shmkafkad --config /etc/shmkafka/shmkafkad.toml --check-config
expect_not "other users cannot read the configuration" \
    setpriv --reuid nobody --regid nogroup --clear-groups cat /etc/shmkafka/shmkafkad.toml
expect "shmkafka-tune is installed" test -x /usr/sbin/shmkafka-tune
expect "the recommended sysctl drop-in is shipped as data" test -f /usr/share/shmkafka/60-shmkafka.conf
expect_not "no sysctl drop-in is activated" sh -c 'ls /etc/sysctl.d/*shmkafka* /usr/lib/sysctl.d/*shmkafka*'
expect "the unit is installed" sh -c 'test -f /lib/systemd/system/shmkafkad.service || test -f /usr/lib/systemd/system/shmkafkad.service'
expect_not "the unit is not enabled" sh -c 'ls /etc/systemd/system/*.wants/shmkafkad.service'
expect_link "$libdir/libshmkafka.so" libshmkafka.so.0
expect "the header and static library are installed" test -f /usr/include/shmkafka.h -a -f "$libdir/libshmkafka.a"
expect "shmkafka.pc names the library directory" grep -qx "libdir=$libdir" "$libdir/pkgconfig/shmkafka.pc"

echo "== a C program built against libshmkafka-dev"
apt_in_root install --no-install-recommends gcc libc6-dev pkgconf > /dev/null
cp "$source_dir/client-lib/examples/c/produce.c" "$root/tmp/produce.c"
expect "the C example builds with pkg-config shmkafka" sh -c \
    'cc -o /tmp/produce /tmp/produce.c $(pkg-config --cflags --libs shmkafka)'
expect "it loads libshmkafka.so.0 from $libdir" sh -c \
    "ldd /tmp/produce | grep -q 'libshmkafka.so.0 => \(/usr\)\?/lib/$multiarch/libshmkafka.so.0'"
# Without a daemon it runs into the library and fails to connect, naming
# the socket.
output="$(in_root /tmp/produce topic 1 /run/shmkafka/absent.sock 2>&1 || true)"
if grep -q 'connect: .*absent.sock' <<< "$output"; then
    pass "the program runs and reports: $output"
else
    fail "the C example should fail to connect to /run/shmkafka/absent.sock: $output"
fi
# The static library links with pkg-config's private libraries alone.
expect "the C example links libshmkafka.a statically" sh -c \
    "cc -o /tmp/produce-static /tmp/produce.c \$(pkg-config --cflags shmkafka) $libdir/libshmkafka.a \
        \$(pkg-config --static --libs shmkafka | sed 's/-lshmkafka //') && ! ldd /tmp/produce-static | grep -q libshmkafka"

echo "== upgrade"
# A later version whose example configuration changed: dpkg replaces the
# unmodified conffile, and must keep its owner and mode (the daemon reads
# it as group shmkafka; it may hold secrets).
next="$root/next"
dpkg-deb --raw-extract "${deb[shmkafkad]}" "$next"
sed -i "s/^Version: .*/Version: $version+next1/" "$next/DEBIAN/control"
echo "# next version" >> "$next/etc/shmkafka/shmkafkad.toml"
(cd "$next" && find . -path ./DEBIAN -prune -o -type f -exec md5sum {} + | sed 's#  \./#  #') \
    > "$next/DEBIAN/md5sums"
dpkg-deb --root-owner-group --build "$next" "$root/debs/shmkafkad_next.deb" > /dev/null
rm -rf "$next"
in_root dpkg -i /debs/shmkafkad_next.deb
expect "the unmodified conffile was upgraded" grep -qx '# next version' /etc/shmkafka/shmkafkad.toml
expect_stat /etc/shmkafka/shmkafkad.toml "640 root shmkafka"
expect_stat /etc/shmkafka "750 root shmkafka"
# The administrator's edits survive a reinstall.
in_root sh -c 'echo "# edited by the administrator" >> /etc/shmkafka/shmkafkad.toml'
in_root dpkg -i /debs/shmkafkad_next.deb
expect "the administrator's edit survived" grep -qx '# edited by the administrator' /etc/shmkafka/shmkafkad.toml
expect_stat /etc/shmkafka/shmkafkad.toml "640 root shmkafka"

echo "== remove"
apt_in_root remove shmkafkad
expect_not "/usr/bin/shmkafkad is gone" test -e /usr/bin/shmkafkad
expect "the configuration stays" grep -qx '# edited by the administrator' /etc/shmkafka/shmkafkad.toml
expect "the spool stays" test -d /var/lib/shmkafka/spool

echo "== purge"
apt_in_root purge shmkafkad libshmkafka-dev libshmkafka0
for package in shmkafkad libshmkafka-dev libshmkafka0; do
    if in_root dpkg-query -W -f '${db:Status-Status}' "$package" 2> /dev/null | grep -v not-installed > /dev/null; then
        fail "$package is still known to dpkg after purge"
    fi
done
expect_not "/etc/shmkafka is gone" test -e /etc/shmkafka
expect_not "/var/lib/shmkafka is gone" test -e /var/lib/shmkafka
expect_not "no stat override is left" sh -c 'dpkg-statoverride --list | grep shmkafka'
expect_not "no unit state is left" sh -c 'find /etc/systemd /var/lib/systemd -name "*shmkafkad*" | grep .'
if in_loader_cache; then
    fail "libshmkafka.so.0 is still in the loader cache after purge"
else
    pass "libshmkafka.so.0 left the loader cache"
fi
# Any file of the packages left behind (directories shared with other
# packages, like /usr/bin, are not theirs to remove).
left=""
for file in "${deb[shmkafkad]}" "${deb[libshmkafka0]}" "${deb[libshmkafka-dev]}"; do
    while read -r path; do
        if [ -e "$root$path" ] || [ -L "$root$path" ]; then
            left+=" $path"
        fi
    done < <(dpkg-deb --fsys-tarfile "$file" | tar -t | sed 's#^\.##' | grep -v '/$')
done
if [ -z "$left" ]; then pass "no file of the packages is left"; else fail "left after purge:$left"; fi
# Kept by design, as Debian does with system users: files they own may
# remain (for example in backups).
echo "left after purge, by design: $(in_root getent passwd shmkafka), $(in_root getent group shmkafka)"

echo "($((SECONDS - start)) s)"
if ((failures)); then
    echo "test-install.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "test-install.sh: all checks passed"
