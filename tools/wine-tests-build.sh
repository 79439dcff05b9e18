# shellcheck shell=bash disable=SC2154 # top, builddir and out are set by tools/wine-tests
# wine-tests-build.sh: the programs tools/wine-tests runs: tests/win,
# built with each Wine's winegcc and harness; Wine's own virtual tests and
# ws2_32's test_write_watch, built from each version's source; Boehm GC's
# test program.  Sourced; the script sets top, builddir, and out, where the
# programs go.

# mingw BITS: the mingw-w64 compiler for 64- or 32-bit programs
mingw()
{
    if [ "$1" = 32 ]; then echo i686-w64-mingw32-gcc; else echo x86_64-w64-mingw32-gcc; fi
}

# write_testlist FILE TEST...: the test list of a program of Wine's tests
write_testlist()
{
    local file=$1 test
    shift
    {
        echo "/* the test list: $* */"
        printf '#define STANDALONE\n#include <stdarg.h>\n#include "windef.h"\n#include "winbase.h"\n'
        printf '#include "wincon.h"\n#include "wine/test.h"\n'
        for test in "$@"; do echo "extern void func_$test(void);"; done
        echo "const struct test winetest_testlist[] ="
        echo "{"
        for test in "$@"; do echo "    { \"$test\", func_$test },"; done
        echo "    { 0, 0 }"
        echo "};"
    } > "$file"
}

# build_programs: Boehm GC's test program, 64- and 32-bit, once for every
# Wine (tools/boehm-gc installs the 32-bit compiler), and the sources the
# test programs of each Wine share
build_programs()
{
    # shellcheck disable=SC2034 # run by tools/wine-tests
    mapfile -t gctest < <("$top/tools/boehm-gc" --builddir "$builddir/build/boehm-gc" gctest gctest32 | tail -n 2)
    # shellcheck disable=SC2046 # a word a test
    write_testlist "$out/testlist-writewatch.c" $(sed -n 's/^START_TEST(\(.*\))$/\1/p' "$top"/tests/win/*.c)
    write_testlist "$out/testlist-virtual.c" virtual
    write_testlist "$out/testlist-write_watch.c" write_watch
    # ws2_32's test_write_watch on its own
    cat > "$out/sock_write_watch.c" <<'TEST'
#include "sock.c"

void func_write_watch(void)
{
    Init();
    test_write_watch();
    Exit();
}
TEST
}

# where_wine_lives VERSION COMMAND...: COMMAND where that Wine lives: on
# this machine, or inside the root wine-host built it in (the project, /tmp
# and the build directory at their own paths)
where_wine_lives()
{
    local version=$1 root=""
    shift
    [ -z "$(wine_root "$version")" ] || root=$top/build/wine-$version/root
    in_root --bind "$builddir" "$root" "$@"
}

# build_ours VERSION: tests/win, 64- and 32-bit, with that Wine's winegcc
# and its own include/wine/test.h, which Debian does not ship
build_ours()
{
    local version=$1 wine=$top/build/wine-$1 bits target libs
    mkdir -p "$out/include-$version/wine"
    cp "$wine/src/include/wine/test.h" "$out/include-$version/wine/"
    for bits in 64 32; do
        target=x86_64-w64-mingw32 libs=()
        [ $bits = 64 ] || target=i686-w64-mingw32 libs=(-L"$wine/wow64/lib")
        where_wine_lives "$version" winegcc-stable -b $target -mconsole -O2 -Wall -Wextra -Werror \
            -I"$out/include-$version" -I"$top/tests/win" "${libs[@]}" -o "$out/writewatch$bits-$version.exe" \
            "$out/testlist-writewatch.c" "$top"/tests/win/*.c || return 1
    done
}

# build_wine_test BITS SRC IMPLIB EXE ARGS...: a test of Wine's, its
# sources and options ARGS, with the headers of SRC, linked with ntdll's
# import library
build_wine_test()
{
    local bits=$1 src=$2 implib=$3 exe=$4
    shift 4
    "$(mingw "$bits")" -O2 -I"$src/include" -I"$src/include/msvcrt" -D__WINESRC__ -D__WINE_PE_BUILD -D_MSVCR_VER=0 \
        -o "$exe" "$@" -luser32 -ladvapi32 "$implib"
}

# build_wine_tests VERSION BITS SRC IMPLIB: Wine's virtual tests, kernel32's
# also as write-watch-tests.patch alone leaves it, for stock Wine
# (DIR/stock-tests/virtual.c, which tools/wine-host keeps), and ws2_32's
# test_write_watch
build_wine_tests()
{
    local dll
    for dll in kernel32 ntdll; do
        build_wine_test "$2" "$3" "$4" "$out/${dll}_virtual$2-$1.exe" "$out/testlist-virtual.c" \
            "$3/dlls/$dll/tests/virtual.c" || return 1
    done
    build_wine_test "$2" "$3" "$4" "$out/kernel32_virtual$2-$1-stock.exe" "$out/testlist-virtual.c" \
        "$top/build/wine-$1/stock-tests/virtual.c" &&
    build_wine_test "$2" "$3" "$4" "$out/sock_write_watch$2-$1.exe" "$out/testlist-write_watch.c" \
        "$out/sock_write_watch.c" -I"$3/dlls/ws2_32/tests" -lws2_32 -liphlpapi
}
