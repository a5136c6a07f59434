#!/usr/bin/env bash
# tests/programs/git_work.sh DIR - a deterministic git session on a scratch
# repository of a few thousand files, printing everything that must not
# depend on the allocator: object ids, status, log, diff stats, fsck, the
# object list after gc and a hash of `git archive`.
#
# run.sh runs it twice, on the system allocator and under LD_PRELOAD, and
# requires identical output. Dates, names and config are fixed; nothing is
# read from the user's or the system's git configuration.
set -euo pipefail

DIR=$1
NDIRS=${GIT_WORK_DIRS:-60}
NFILES=${GIT_WORK_FILES:-50}   # per directory

export HOME=$DIR/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Memalloc Test" GIT_AUTHOR_EMAIL="test@memalloc.invalid"
export GIT_COMMITTER_NAME="Memalloc Test" GIT_COMMITTER_EMAIL="test@memalloc.invalid"
export GIT_AUTHOR_DATE="2024-01-01T00:00:00 +0000" GIT_COMMITTER_DATE="2024-01-01T00:00:00 +0000"
mkdir -p "$HOME"

git init -q -b main "$DIR/repo"
cd "$DIR/repo"
git config gc.auto 0
git config core.autocrlf false
git config advice.detachedHead false

# a tree of NDIRS directories of NFILES text files each, 200 B - 12 KB
awk -v nd="$NDIRS" -v nf="$NFILES" 'BEGIN {
    for (d = 0; d < nd; d++) {
        dir = sprintf("src/d%02d", d)
        system("mkdir -p " dir)
        for (f = 0; f < nf; f++) {
            path = sprintf("%s/f%03d.txt", dir, f)
            lines = 4 + (d * 131 + f * 17) % 300
            for (l = 0; l < lines; l++)
                printf "line %d of file %d/%d: %x %s\n", l, d, f, (d * 7919 + f * 104729 + l * 31) % 65521, (l % 5 ? "alpha" : "omega") > path
            close(path)
        }
    }
}'
git add -A
git commit -q -m "initial tree"
echo "commit1 $(git rev-parse HEAD) tree $(git rev-parse 'HEAD^{tree}')"

# second commit: edits, deletions and renames
export GIT_AUTHOR_DATE="2024-01-02T12:00:00 +0000" GIT_COMMITTER_DATE="2024-01-02T12:00:00 +0000"
awk -v nd="$NDIRS" -v nf="$NFILES" 'BEGIN {
    for (d = 0; d < nd; d++)
        for (f = 0; f < nf; f++)
            if ((d * nf + f) % 5 == 0) {
                path = sprintf("src/d%02d/f%03d.txt", d, f)
                printf "edited in commit 2: %d %d\n", d, f >> path
                close(path)
            }
}'
for d in $(seq 0 7 $((NDIRS - 1))); do
    git rm -q "src/d$(printf %02d "$d")/f001.txt"
    git mv "src/d$(printf %02d "$d")/f002.txt" "src/d$(printf %02d "$d")/renamed002.txt"
done
git add -A
git commit -q -m "edit every fifth file, remove and rename a few"
echo "commit2 $(git rev-parse HEAD) tree $(git rev-parse 'HEAD^{tree}')"

# a branch and a merge
export GIT_AUTHOR_DATE="2024-01-03T08:00:00 +0000" GIT_COMMITTER_DATE="2024-01-03T08:00:00 +0000"
git checkout -q -b side HEAD~1
echo "side branch file" >side.txt
git add side.txt
git commit -q -m "side branch"
git checkout -q main
git merge -q --no-edit side
echo "merge $(git rev-parse HEAD)"

# working tree changes for status
echo "untracked" >untracked.txt
echo "more" >>src/d03/f010.txt
rm src/d04/f011.txt
echo "== status"
git status --porcelain=v1
echo "== diff stat"
git diff --stat | tail -n 3
git checkout -q -- .
rm -f untracked.txt

echo "== log"
git log --format='%H %T %P %an %ad %s' --date=iso-strict
git log --stat -M --format='%h %s' HEAD~1..HEAD | tail -n 5
echo "== diff between commits"
git diff --shortstat HEAD~2 HEAD
git diff -M --name-status HEAD~2 HEAD | grep -c . || true
echo "== grep"
git grep -c omega -- src/d1* | tail -n 3
echo "== ls-tree"
git ls-tree -r HEAD | sha256sum
git ls-tree -r HEAD | wc -l

echo "== gc and fsck"
git gc -q --prune=now
git count-objects -v | grep -E '^(count|in-pack|garbage):'
git fsck --full --strict --no-progress 2>&1
git cat-file --batch-all-objects --batch-check='%(objectname) %(objecttype) %(objectsize)' | sort | sha256sum
git cat-file --batch-all-objects --batch-check | wc -l
echo "== archive"
git archive --format=tar HEAD | sha256sum
echo "== done"
