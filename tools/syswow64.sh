# syswow64.sh: fill_syswow64, for tools/run-wine and the installed launcher
# writewatch-wine (tools/install-wine puts it beside it).  Sourced.

# fill_syswow64 PREFIX COMMAND...: wineboot fills C:\windows\syswow64 from
# the i386 PE DLLs when it makes a prefix; a prefix made by a Wine without
# them (Debian's wine64 alone) gets them now from COMMAND, the Wine loader
# as it runs here, in the bootstrap mode that lets the 32-bit installer load
# DLLs the prefix lacks
fill_syswow64()
{
    local prefix=$1
    shift
    [ -d "$prefix/drive_c/windows" ] || return 0
    [ ! -f "$prefix/drive_c/windows/syswow64/kernel32.dll" ] || return 0
    WINEDEBUG=-all WINEBOOTSTRAPMODE=1 "$@" wineboot.exe -u >/dev/null 2>&1 || true
    if [ ! -f "$prefix/drive_c/windows/syswow64/kernel32.dll" ]; then
        echo "$prefix has no 32-bit system DLLs (syswow64): 32-bit programs will not start" >&2
    fi
}
