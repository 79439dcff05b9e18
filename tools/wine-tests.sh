# shellcheck shell=bash disable=SC2154 # the counts, top and no_32bit are set by tools/wine-tests
# wine-tests.sh: how tools/wine-tests counts and reads what it runs: a
# check counted as passed, failed or skipped, a program run under one of
# the Wines into a log, and what the summary lines and failures of Wine's
# test harness in a log say.  Sourced; the script sets passed, failed and
# skipped (the counts), top, and no_32bit (why this machine cannot run
# 32-bit code, or nothing).

# count LABEL PASSED FAILED: adds one run's figures
count()
{
    echo "$1: $2 passed, $3 failed"
    passed=$((passed + $2))
    failed=$((failed + $3))
}

# skip_32bit LABEL: a check of 32-bit programs, skipped on this machine
skip_32bit()
{
    echo "$1: skipped (no 32-bit code here)"
    skipped=$((skipped + 1))
}

# check FUNCTION VERSION BITS ARGS...: one counted check, or, for 32-bit
# programs on a machine that cannot run them, one skipped, named by the
# function and its arguments but paths
check()
{
    local label="Wine $2, 32-bit, $1" word
    if [ "$3" != 32 ] || [ -z "$no_32bit" ]; then
        "$@"
        return
    fi
    for word in "${@:4}"; do
        case "$word" in /*) ;; *) label="$label $word" ;; esac
    done
    skip_32bit "$label"
}

# logged OUT ERR COMMAND...: COMMAND's output into OUT, its errors into ERR
# (the same file when named twice).  A Wine program starting as its
# prefix's wineserver shuts down now and then loses the server before any
# of its code runs ("wine client error:0: recvmsg: Connection reset by
# peer"; stock Wine 8.0 too, about one in 50 runs started right after
# Boehm GC's test here): such a run is repeated once, and says so.
logged()
{
    local out=$1 err=$2 status attempt
    shift 2
    for attempt in 1 2; do
        if [ "$out" = "$err" ]; then "$@" > "$out" 2>&1; else "$@" > "$out" 2> "$err"; fi
        status=$?
        if [ $attempt = 2 ] || [ $status = 0 ] || ! grep -aq '^wine client error:' "$err"; then break; fi
        echo "${out##*/}: Wine lost its wineserver at start-up (wine client error); running it again"
    done
    return $status
}

# under_wine SECONDS VERSION BACKEND|stock LOG PROGRAM ARGS...: PROGRAM
# under that Wine, for SECONDS at most, its output into LOG
under_wine()
{
    local limit=$1 version=$2 backend=$3 log=$4
    shift 4
    if [ "$backend" = stock ]; then set -- --stock "$@"; fi
    logged "$log" "$log" env WRITEWATCH_BACKEND="$backend" timeout "$limit" "$top/tools/run-wine" \
        --wine "$version" "$@"
}

# executed_and_failed LOG: the checks LOG's runs executed and failed,
# added up over its summary lines (one a process)
executed_and_failed()
{
    sed -n 's/.* \([0-9]*\) tests executed ([0-9]* marked as todo, [0-9]* as flaky, \([0-9]*\) failures.*/\1 \2/p' "$1" |
        awk '{ executed += $1; failed += $2 } END { print executed + 0, failed + 0 }'
}

# failures LOG: the failing checks of a Wine test log, one a line
failures()
{
    grep -a 'Test failed\|Test succeeded inside todo' "$1" | sed 's/^[0-9a-f]*://' | sort
}

# check_write_watch_tests NAME SOURCE LOG TODO: Wine's write-watch tests
# (the test_write_watch* functions of SOURCE, kernel32's virtual.c) in LOG
# failed nowhere; with TODO "none", they also have no todo_wine or skip
check_write_watch_tests()
{
    local name=$1 lines failed todo skipped
    lines=$(awk 'NR == FNR { if (/^static void test_write_watch/) first = FNR
                             if (first && /^}/) { last[first] = FNR; first = 0 }
                             next }
                 match($0, /virtual\.c:[0-9]+:/) { line = substr($0, RSTART + 10, RLENGTH - 11) + 0
                                                  for (first in last) if (line >= first + 0 && line <= last[first]) print }' \
                "$2" "$3")
    failed=$(grep -c 'Test failed\|Test succeeded inside todo' <<< "$lines")
    todo=$(grep -c 'Test marked todo' <<< "$lines")
    skipped=$(grep -c 'Tests skipped' <<< "$lines")
    name="$name: Wine's write-watch tests, $failed failed, $todo todo_wine, $skipped skipped"
    if [ "$failed" = 0 ] && { [ "$4" != none ] || [ $((todo + skipped)) = 0 ]; }; then
        count "$name" 1 0
    else
        grep -v 'Test marked todo' <<< "$lines" | head -n 20
        count "$name" 0 1
    fi
}
