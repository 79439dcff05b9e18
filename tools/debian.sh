# shellcheck shell=dash disable=SC2154 # top is set by the script that sources this
# debian.sh: Debian packages and roots, for the tools and .ci/run: what is
# installed, installing what is missing, and running a command where a
# Wine lives.  Sourced; the script sets top, the project directory.

apt_get="apt-get -o DPkg::Lock::Timeout=600"

# in_root [--bind DIR] ROOT COMMAND...: COMMAND inside ROOT (tools/debian-root,
# DIR mounted there too), or on this machine where ROOT is empty
in_root()
{
    local bind=""
    if [ "$1" = --bind ]; then bind=$2; shift 2; fi
    if [ -z "$1" ]; then shift; "$@"; return; fi
    if [ -n "$bind" ]; then set -- --bind "$bind" "$@"; fi
    "$top/tools/debian-root" run "$@"
}

# package_version ROOT PACKAGE: the version of PACKAGE installed in ROOT
# (empty: this machine)
package_version()
{
    dpkg-query --admindir="$1/var/lib/dpkg" -W -f='${Version}' "$2"
}

# missing_packages ROOT PACKAGE...: those of PACKAGEs not installed in ROOT
# (empty: this machine), on one line
missing_packages()
{
    local root=$1 package missing=""
    shift
    for package in "$@"; do
        dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' "$package" 2>/dev/null | grep -q ' installed$' ||
            missing="$missing${missing:+ }$package"
    done
    echo "$missing"
}

# install_packages ROOT PACKAGE...: installs those missing in ROOT (empty:
# this machine) with apt-get, after updating its lists, without
# recommended packages
install_packages()
{
    local root=$1 missing clean=""
    shift
    missing=$(missing_packages "$root" "$@")
    [ -n "$missing" ] || return 0
    # a root keeps no downloaded packages (400 MB)
    [ -z "$root" ] || clean=" && $apt_get clean"
    in_root "$root" env DEBIAN_FRONTEND=noninteractive sh -c \
        "$apt_get update -q && $apt_get install -y -q --no-install-recommends $missing$clean"
}
