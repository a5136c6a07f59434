#!/bin/sh
# tests/frontdoor/docs_sync.sh - the documentation keeps up with the code.
#
#   - every exported ma_* function of include/memalloc.h (a MA_EXPORT
#     declaration) and every MEMALLOC_* variable of the option table is
#     named in docs/memalloc.3 and in README.md;
#   - every option that `memalloc --help` lists is named in docs/memalloc.1
#     and in README.md;
#   - both man pages carry the Makefile's VERSION in their .TH line and
#     render with groff without a warning.
#
# Prints what is missing, one line each, and exits 1 if anything is.
# Run from the top of the source tree:
#
#   VERSION=0.1.0 tests/frontdoor/docs_sync.sh [LAUNCHER]
#
# The option table lives in config.c, which may move between src/, base/
# and arenas/, so it is found by a glob over those folders. HEADER, MAN1,
# MAN3 and README may be set to check other copies of the files; the
# self-test at the end uses that to make sure a missing name is caught.
set -eu

LAUNCHER=${1:-build/memalloc}
HEADER=${HEADER:-include/memalloc.h}
MAN1=${MAN1:-docs/memalloc.1}
MAN3=${MAN3:-docs/memalloc.3}
README=${README:-README.md}
VERSION=${VERSION:?VERSION must be set (the Makefile passes it)}

missing=0
miss() {
    echo "docs_sync: $1"
    missing=$((missing + 1))
}

# ---- what the code defines ----
# `MA_EXPORT <type> ma_name(` on one line, as every declaration of the
# header is written.
funcs=$(sed -n 's/^MA_EXPORT[^(]*[^a-z0-9_]\(ma_[a-z0-9_]*\)(.*/\1/p' "$HEADER" | sort -u)
nfuncs=$(printf '%s\n' "$funcs" | grep -c . || true)
if [ "$nfuncs" -lt 10 ]; then
    miss "found only $nfuncs MA_EXPORT ma_* declarations in $HEADER; has its style changed?"
fi

# The option table's rows start with `{ "NAME",` (the name without its
# MEMALLOC_ prefix); any whole "MEMALLOC_X" string literal counts too.
srcs=
for f in src/*.c src/*/*.c base/*.c base/*/*.c arenas/*.c arenas/*/*.c; do
    [ -f "$f" ] && grep -q 'MEMALLOC_' "$f" && srcs="$srcs $f"
done
# shellcheck disable=SC2086 # $srcs is a list of paths without spaces
vars=$( {
    sed -n 's/^[[:space:]]*{[[:space:]]*"\([A-Z][A-Z0-9_]*\)",.*/MEMALLOC_\1/p' $srcs
    grep -oh '"MEMALLOC_[A-Z0-9][A-Z0-9_]*"' $srcs | tr -d '"'
} | sort -u)
nvars=$(printf '%s\n' "$vars" | grep -c . || true)
if [ "$nvars" -lt 8 ]; then
    miss "found only $nvars MEMALLOC_* variables in$srcs; has the option table moved or changed shape?"
fi

# The help's option lines start with two spaces and a dash; the names are
# in their first column ("  -h, --help", "  --stats=json", "  --arenas N").
opts=$("$LAUNCHER" --help | grep -o -- '^  -[^ ]*\(, -[^ ]*\)*' | grep -o -- '--*[a-z][a-z-]*' | sort -u)
nopts=$(printf '%s\n' "$opts" | grep -c . || true)
if [ "$nopts" -lt 8 ]; then
    miss "found only $nopts options in $LAUNCHER --help"
fi

# ---- what the documents say ----
# Man pages with roff's font changes, \- and \& taken out, so a name reads
# as plain text.
T=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-docs.XXXXXX")
trap 'rm -rf "$T"' EXIT
plain() {
    sed -e 's/\\f[BIRP]//g' -e 's/\\f([A-Z][A-Z]//g' -e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\c$//' "$1"
}
plain "$MAN1" > "$T/man1"
plain "$MAN3" > "$T/man3"

# A name counts when it stands as a word of its own (MEMALLOC_CHECK inside
# MEMALLOC_CHECK_EVERY does not).
for name in $funcs $vars; do
    grep -qw -- "$name" "$T/man3" || miss "$name is not in $MAN3"
    grep -qw -- "$name" "$README" || miss "$name is not in $README"
done
for opt in $opts; do
    grep -qE -- "(^|[^a-z-])$opt([^a-z-]|\$)" "$T/man1" || miss "launcher option $opt is not in $MAN1"
    grep -qE -- "(^|[^a-z-])$opt([^a-z-]|\$)" "$README" || miss "launcher option $opt is not in $README"
done

for page in "$MAN1" "$MAN3"; do
    grep -q "^\.TH .*\"memalloc $VERSION\"" "$page" || miss "$page: .TH does not say \"memalloc $VERSION\""
    warnings=$(groff -man -ww -z -Tutf8 "$page" 2>&1) || miss "$page: groff failed"
    [ -z "$warnings" ] || miss "$page: groff warns: $warnings"
done

# ---- self-test ----
# Copies of memalloc.3 and README.md with one function and one variable
# taken out must fail, naming the three and nothing else: a check that
# cannot fail proves nothing. Run only when the documents themselves pass.
if [ "${DOCS_SYNC_SELF_TEST:-1}" = 1 ] && [ "$missing" = 0 ]; then
    sed -e '/ma_memdup/d' -e '/MEMALLOC_HEAP_MAP/d' "$MAN3" > "$T/cut.3"
    sed -e 's/ma_heap_map/ma_XXX/g' "$README" > "$T/cut.md"
    rc=0
    DOCS_SYNC_SELF_TEST=0 MAN3="$T/cut.3" README="$T/cut.md" "$0" "$LAUNCHER" > "$T/self" 2>&1 || rc=$?
    if [ "$rc" != 1 ] ||
        ! grep -q "ma_memdup is not in $T/cut.3" "$T/self" ||
        ! grep -q "MEMALLOC_HEAP_MAP is not in $T/cut.3" "$T/self" ||
        ! grep -q "ma_heap_map is not in $T/cut.md" "$T/self" ||
        [ "$(grep -c 'is not in' "$T/self")" != 3 ]; then
        miss "self-test: copies with ma_memdup and MEMALLOC_HEAP_MAP cut from $MAN3 and ma_heap_map from $README gave status $rc and:"
        sed 's/^/    /' "$T/self"
    fi
fi

if [ "$missing" -gt 0 ]; then
    echo "docs_sync: $missing problem(s)"
    exit 1
fi
echo "docs_sync: $nfuncs ma_* functions and $nvars MEMALLOC_* variables in $MAN3 and $README," \
    "$nopts launcher options in $MAN1 and $README; both pages carry $VERSION and render cleanly"
