# shellcheck shell=bash disable=SC2154 # logs and top are set by the script that sources this
# steps.sh: the build scripts' steps (tools/wine-host, tools/boehm-gc), one
# line each with what it did and how long it took, quiet but for failures.
# Sourced; the script sets logs, the directory the logs go to, and top, the
# project directory.

# shellcheck source=tools/debian.sh
. "$top/tools/debian.sh"

step_start=0

# begin LABEL: starts a step
begin()
{
    step_start=$(date +%s)
    printf '%-44s' "$1..."
}

# end [WHAT]: ends it, saying what it did (default "done") and its time
end()
{
    echo " ${1:-done} ($(( $(date +%s) - step_start )) s)"
}

# run LOG COMMAND...: runs quietly into $logs/LOG, shows the log's end and
# exits on failure
run()
{
    local log=$logs/$1
    shift
    if ! "$@" > "$log" 2>&1; then
        echo " failed; the end of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

# install_step ROOT PACKAGE...: the step that installs those of PACKAGEs
# missing in ROOT (empty: this machine)
install_step()
{
    local missing
    missing=$(missing_packages "$@")
    begin "Debian packages"
    if [ -z "$missing" ]; then end "present"; return; fi
    run apt-install.log install_packages "$@"
    end "installed $missing"
}
