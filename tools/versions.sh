# shellcheck shell=bash disable=SC2154 # top is set by the script that sources this
# versions.sh: the Wines writewatch is built into, as the table
# tools/wine-versions lists them.  Sourced; the script sets top, the
# project directory.

wine_table=$top/tools/wine-versions

# wine_versions: the versions, in the table's order
wine_versions()
{
    awk '{ sub(/#.*/, "") } NF && $1 != "*" && !seen[$1]++ { print $1 }' "$wine_table"
}

# wine_default: the version tools take unless told: the table's first
wine_default()
{
    wine_versions | head -n 1
}

# wine_field VERSION FIELD: the words of FIELD for VERSION, on one line
# (none for a field it lacks); fails for a version the table lacks
wine_field()
{
    awk -v version="$1" -v field="$2" '
        { sub(/#.*/, "") }
        $1 == version { known = 1 }
        ($1 == version || $1 == "*") && $2 == field { for (i = 3; i <= NF; i++) words = words (words == "" ? "" : " ") $i }
        END { if (known) print words; exit !known }' "$wine_table"
}

# wine_root VERSION: the root VERSION is built and run in, or nothing for
# this machine
wine_root()
{
    local root
    root=$(wine_field "$1" root) || return
    [ "$root" = host ] || echo "$top/$root"
}

# known_wine TOOL VERSION: fails, saying which versions there are, for one
# the table lacks
known_wine()
{
    local versions
    wine_field "$2" suite > /dev/null && return
    versions=$(wine_versions | paste -sd ' ')
    echo "$1: unknown Wine version $2 (${versions// / or })" >&2
    return 1
}
