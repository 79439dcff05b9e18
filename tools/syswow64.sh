# shellcheck shell=bash disable=SC2154 # probe_32bit is set by the script that sources this
# syswow64.sh: what 32-bit programs need, for tools/run-wine and the
# installed launcher writewatch-wine (tools/install-wine puts it beside it):
# a machine that runs 32-bit code, and the prefix's syswow64.  Sourced; the
# script sets probe_32bit, the path of the tree's can-run-32bit
# (tools/can-run-32bit.c, which tools/wine-host builds into the tree).

# no_32bit_reason: prints why this machine cannot run 32-bit code; fails
# where it can, and where the probe could not tell (then the program tries)
no_32bit_reason()
{
    local answer status=0
    answer=$("$probe_32bit") || status=$?
    [ $status = 1 ] || return 1
    echo "this machine cannot run 32-bit code, nor can stock Wine here (${answer#no: })"
}

# is_32bit_program FILE: whether FILE is an i386 PE program: "PE\0\0" at
# the offset the MZ header gives, then the machine 0x014c
is_32bit_program()
{
    local offset
    [ -f "$1" ] && [ "$(head -c 2 "$1")" = MZ ] || return 1
    offset=$(od -An -tu4 -j60 -N4 "$1" | tr -d ' ')
    [ -n "$offset" ] && [ "$(od -An -tx1 -j"$offset" -N6 "$1" | tr -d ' ')" = 504500004c01 ]
}

# refuse_32bit_program FILE: fails, saying why, for a 32-bit FILE on a
# machine that cannot run 32-bit code
refuse_32bit_program()
{
    local reason
    is_32bit_program "$1" || return 0
    reason=$(no_32bit_reason) || return 0
    echo "$1 is a 32-bit program, and $reason" >&2
    return 1
}

# fill_syswow64 PREFIX COMMAND...: wineboot fills C:\windows\syswow64 from
# the i386 PE DLLs when it makes a prefix; a prefix made by a Wine without
# them (Debian's wine64 alone) gets them now from COMMAND, the Wine loader
# as it runs here, in the bootstrap mode that lets the 32-bit installer load
# DLLs the prefix lacks.  The installer is 32-bit code: on a machine that
# cannot run it, this says why instead.
fill_syswow64()
{
    local prefix=$1 reason
    shift
    [ -d "$prefix/drive_c/windows" ] || return 0
    [ ! -f "$prefix/drive_c/windows/syswow64/kernel32.dll" ] || return 0
    if reason=$(no_32bit_reason); then
        echo "$prefix has no 32-bit system DLLs (syswow64): $reason" >&2
        return 0
    fi
    WINEDEBUG=-all WINEBOOTSTRAPMODE=1 "$@" wineboot.exe -u >/dev/null 2>&1 || true
    if [ ! -f "$prefix/drive_c/windows/syswow64/kernel32.dll" ]; then
        echo "$prefix has no 32-bit system DLLs (syswow64): 32-bit programs will not start" >&2
    fi
}
