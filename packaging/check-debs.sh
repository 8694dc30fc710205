#!/usr/bin/env bash
# Checks the packages packaging/build-deb.sh built, without installing them:
# the split (the daemon, the shared library and its development files in
# separate packages), what each holds, its dependencies, the shared
# library's shlibs, symbols and ldconfig trigger, separate debug info, and
# lintian (errors fail; warnings are printed).
#
#   packaging/check-debs.sh [dir]      # default: target/debian
#
# Prints every failed check, then exits 1 if there was one. No `set -e`:
# a missing piece is reported by its check, and the others still run.
set -uo pipefail

dir="${1:-target/debian}"
failures=0
fail() {
    echo "check-debs.sh: FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

work="$(mktemp -d)" || exit 1
trap 'rm -rf "$work"' EXIT

# The .deb of each package, by its control field (file names may vary).
declare -A deb=()
for file in "$dir"/*.deb; do
    [ -e "$file" ] || continue
    deb[$(dpkg-deb --field "$file" Package)]="$file"
done
echo "== lintian"
# initial-upload-closes-no-bugs: these packages are not uploaded to Debian,
# there is no bug asking for them to close.
if ! command -v lintian > /dev/null; then
    fail "lintian not found (apt-get install lintian)"
elif lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$dir"/*.deb; then
    pass "lintian: no errors"
else
    fail "lintian found errors (E: lines above)"
fi

echo "== packages"
for package in shmkafkad libshmkafka0 libshmkafka-dev shmkafkad-dbgsym libshmkafka0-dbgsym; do
    if [ -z "${deb[$package]:-}" ]; then
        fail "no package $package in $dir (found: ${!deb[*]})"
    fi
done
if ((failures)); then
    exit 1
fi
pass "packages: ${!deb[*]}"

multiarch="$(dpkg-architecture -q DEB_HOST_MULTIARCH)" || exit 1
libdir="usr/lib/$multiarch"

# Unpacks a package (data and control) into $work/<package>.
unpack() {
    dpkg-deb --raw-extract "${deb[$1]}" "$work/$1" || exit 1
}
for package in "${!deb[@]}"; do
    unpack "$package"
done

# expect_files <package> <path>...: each path is in the package.
expect_files() {
    local package="$1" path
    shift
    for path in "$@"; do
        if [ -e "$work/$package/$path" ] || [ -L "$work/$package/$path" ]; then
            pass "$package holds /$path"
        else
            fail "$package lacks /$path"
        fi
    done
}
# expect_no_files <package> <glob>...: nothing in the package matches.
expect_no_files() {
    local package="$1" pattern found
    shift
    for pattern in "$@"; do
        found="$(cd "$work/$package" && find . -path "./$pattern" | head -n1)"
        if [ -n "$found" ]; then
            fail "$package holds ${found#.} (belongs elsewhere)"
        else
            pass "$package holds no /$pattern"
        fi
    done
}
# expect_link <package> <path> <target>
expect_link() {
    local got
    got="$(readlink "$work/$1/$2" || true)"
    if [ "$got" = "$3" ]; then
        pass "$1: /$2 -> $3"
    else
        fail "$1: /$2 should link to $3, links to '${got:-(not a link)}'"
    fi
}

echo "== contents"
expect_files shmkafkad usr/bin/shmkafkad usr/sbin/shmkafka-tune \
    usr/share/shmkafka/60-shmkafka.conf usr/lib/sysusers.d/shmkafka.conf \
    usr/lib/tmpfiles.d/shmkafka.conf etc/shmkafka/shmkafkad.toml
if [ -e "$work/shmkafkad/lib/systemd/system/shmkafkad.service" ] \
    || [ -e "$work/shmkafkad/usr/lib/systemd/system/shmkafkad.service" ]; then
    pass "shmkafkad holds the unit shmkafkad.service"
else
    fail "shmkafkad lacks the unit shmkafkad.service"
fi
# Installing the package must not change kernel settings.
expect_no_files shmkafkad 'usr/lib/sysctl.d/*' 'etc/sysctl.d/*' "*libshmkafka*" 'usr/include/*'
so_file="$(find "$work/libshmkafka0/$libdir" -name 'libshmkafka.so.*.*.*' -printf '%f\n' 2> /dev/null | head -n1)"
if [ -z "$so_file" ]; then
    fail "libshmkafka0 lacks /$libdir/libshmkafka.so.<version>"
fi
expect_link libshmkafka0 "$libdir/libshmkafka.so.0" "$so_file"
expect_no_files libshmkafka0 "$libdir/libshmkafka.so" "$libdir/*.a" 'usr/include/*' 'usr/bin/*'
expect_files libshmkafka-dev usr/include/shmkafka.h "$libdir/libshmkafka.a" \
    "$libdir/pkgconfig/shmkafka.pc"
expect_link libshmkafka-dev "$libdir/libshmkafka.so" libshmkafka.so.0
expect_no_files libshmkafka-dev "$libdir/libshmkafka.so.*" 'usr/bin/*'
if grep -qx "libdir=/$libdir" "$work/libshmkafka-dev/$libdir/pkgconfig/shmkafka.pc"; then
    pass "shmkafka.pc points at /$libdir"
else
    fail "shmkafka.pc does not say libdir=/$libdir"
fi

echo "== control data"
if grep -qx /etc/shmkafka/shmkafkad.toml "$work/shmkafkad/DEBIAN/conffiles"; then
    pass "/etc/shmkafka/shmkafkad.toml is a conffile"
else
    fail "/etc/shmkafka/shmkafkad.toml is not listed in shmkafkad's conffiles"
fi
for fragment in 'systemd-sysusers.* shmkafka.conf' 'systemd-tmpfiles.* --create shmkafka.conf' \
    'dpkg-statoverride .*--add root shmkafka'; do
    if grep -q -- "$fragment" "$work/shmkafkad/DEBIAN/postinst"; then
        pass "shmkafkad postinst runs '$fragment'"
    else
        fail "shmkafkad postinst lacks '$fragment'"
    fi
done
soname="$(objdump -p "$work/libshmkafka0/$libdir/$so_file" | awk '$1 == "SONAME" {print $2}')"
if [ "$soname" = libshmkafka.so.0 ]; then
    pass "SONAME $soname matches the package name libshmkafka0"
else
    fail "SONAME of $so_file is '$soname', the package libshmkafka0 wants libshmkafka.so.0"
fi
if grep -q '^libshmkafka 0 libshmkafka0' "$work/libshmkafka0/DEBIAN/shlibs" 2> /dev/null; then
    pass "shlibs: $(cat "$work/libshmkafka0/DEBIAN/shlibs")"
else
    fail "libshmkafka0 has no shlibs entry 'libshmkafka 0 libshmkafka0'"
fi
# Every symbol the library exports is in the symbols file, so programs
# built against it get an exact minimal version.
exported="$(nm -D --defined-only "$work/libshmkafka0/$libdir/$so_file" | awk '{print $3}' | sort)"
listed="$(sed -n 's/^ \([^@ ]*\)@Base .*/\1/p' "$work/libshmkafka0/DEBIAN/symbols" 2> /dev/null | sort)"
if [ -n "$exported" ] && [ "$exported" = "$listed" ]; then
    pass "symbols file lists the $(wc -l <<< "$exported") exported symbols"
else
    fail "symbols file of libshmkafka0 differs from the exported symbols:" \
        "$(diff <(echo "$exported") <(echo "$listed") || true)"
fi
if grep -qx 'activate-noawait ldconfig' "$work/libshmkafka0/DEBIAN/triggers" 2> /dev/null; then
    pass "libshmkafka0 activates the ldconfig trigger"
else
    fail "libshmkafka0 lacks the ldconfig trigger (DEBIAN/triggers: activate-noawait ldconfig)"
fi

echo "== dependencies"
# field_packages <package> <field>: the package names a relation field names.
field_packages() {
    dpkg-deb --field "${deb[$1]}" "$2" | tr ',|' '\n' | sed 's/(.*//; s/:.*//; s/ //g' | grep -v '^$' | sort -u
}
daemon_depends="$(field_packages shmkafkad Depends)"
# librdkafka links the system's OpenSSL, SASL and zstd, so their security
# updates reach the daemon; systemd-sysusers creates its user.
for package in libssl3 libsasl2-2 libzstd1 systemd-sysusers; do
    if grep -qx "$package" <<< "$daemon_depends"; then
        pass "shmkafkad depends on $package"
    else
        fail "shmkafkad does not depend on $package (Depends: $daemon_depends)"
    fi
done
# The library depends on what it links and nothing else: the packages
# that hold its NEEDED libraries on this (the build) host.
needed_packages="$(objdump -p "$work/libshmkafka0/$libdir/$so_file" | awk '$1 == "NEEDED" {print $2}' \
    | while read -r lib; do
        path="$(ldconfig -p | awk -v lib="$lib" '$1 == lib {print $NF; exit}')"
        real="$(realpath "$path")"
        # dpkg knows a file by the path its package ships (/lib or /usr/lib).
        for candidate in "$path" "$real" "${real#/usr}" "/usr${path#/usr}"; do
            if dpkg-query --search "$candidate" 2> /dev/null; then
                break
            fi
        done | head -n1 | cut -d: -f1
    done | sort -u)"
lib_depends="$(field_packages libshmkafka0 Depends)"
if [ "$lib_depends" = "$needed_packages" ]; then
    pass "libshmkafka0 depends on exactly what it links: ${lib_depends//$'\n'/ }"
else
    fail "libshmkafka0 depends on '${lib_depends//$'\n'/ }', links libraries of '${needed_packages//$'\n'/ }'"
fi
dev_depends="$(dpkg-deb --field "${deb[libshmkafka-dev]}" Depends)"
version="$(dpkg-deb --field "${deb[libshmkafka0]}" Version)"
if grep -q "libshmkafka0 (= $version)" <<< "$dev_depends"; then
    pass "libshmkafka-dev depends on libshmkafka0 (= $version)"
else
    fail "libshmkafka-dev should depend on libshmkafka0 (= $version), has: $dev_depends"
fi

echo "== stripped, debug info in -dbgsym"
# check_debug <package> <path>: the file has no DWARF, and <package>-dbgsym
# holds it under its build id.
check_debug() {
    local file="$work/$1/$2" build_id debug
    if readelf -S "$file" | grep '\.debug_info' > /dev/null; then
        fail "/$2 in $1 is not stripped"
    else
        pass "/$2 in $1 is stripped"
    fi
    build_id="$(readelf -n "$file" | awk '/Build ID:/ {print $3}')"
    debug="$work/$1-dbgsym/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug"
    if [ -n "$build_id" ] && readelf -S "$debug" 2> /dev/null | grep '\.debug_info' > /dev/null; then
        pass "$1-dbgsym holds the debug info of /$2 (build id $build_id)"
    else
        fail "$1-dbgsym lacks the debug info of /$2 (build id '${build_id}')"
    fi
}
check_debug shmkafkad usr/bin/shmkafkad
check_debug libshmkafka0 "$libdir/$so_file"

if ((failures)); then
    echo "check-debs.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "check-debs.sh: all checks passed"
