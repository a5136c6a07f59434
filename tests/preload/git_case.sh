#!/usr/bin/env bash
# tests/preload/git_case.sh DIR - a git session on a scratch repository in DIR
# (which must exist and be empty). run.sh runs it once per allocator, each in
# its own DIR, and compares the outputs, so everything printed here must
# depend only on the repository's contents: fixed identities and dates make
# the commit hashes deterministic, and nothing prints DIR or pack sizes
# (pack layout may depend on git's delta-search threads).
set -euo pipefail

dir=$1
cd "$dir"

# Isolate git from the user's and the system's configuration.
export HOME=$dir/home
mkdir -p "$HOME"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$HOME/gitconfig
export GIT_AUTHOR_NAME="Preload Test" GIT_AUTHOR_EMAIL=preload@example.com
export GIT_COMMITTER_NAME="Preload Test" GIT_COMMITTER_EMAIL=preload@example.com
export GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat PAGER=cat
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
git config --global init.defaultBranch main
git config --global gc.auto 0
git config --global maintenance.auto false
git config --global core.autocrlf false
git config --global commit.gpgsign false

# commit_at N MSG: a commit with date 2024-01-01 + N minutes; prints its hash.
commit_at() {
    local when
    when=$(printf '2024-01-01T%02d:%02d:00Z' $(($1 / 60)) $(($1 % 60)))
    GIT_AUTHOR_DATE=$when GIT_COMMITTER_DATE=$when git commit -q -m "$2"
    echo "commit $2 $(git rev-parse HEAD)"
}

# gen_files SEED COUNT: COUNT deterministic text files in d0..d9/.
gen_files() {
    awk -v seed="$1" -v count="$2" 'BEGIN {
        x = seed
        for (f = 0; f < count; f++) {
            name = sprintf("d%d/file%03d.txt", f % 10, f)
            x = (x * 69069 + 1) % 4294967296
            lines = 5 + int(x / 65536) % 60
            for (l = 0; l < lines; l++) {
                x = (x * 69069 + 1) % 4294967296
                printf "line %d of %s: value %d %s\n", l, name, int(x / 256) % 1000000, \
                    substr("the quick brown fox jumps over the lazy dog", 1 + int(x / 16) % 20) > name
            }
            close(name)
        }
    }'
}

git init -q repo
cd repo
mkdir -p d0 d1 d2 d3 d4 d5 d6 d7 d8 d9

# 1. a first commit of a few hundred files
gen_files 42 400
git add -A
commit_at 1 initial
git ls-files | wc -l | sed 's/^ */files /'

# 2. modify, delete, rename and add files; diff before and after staging
gen_files 43 120                       # rewrites the first 120 files
git rm -q d9/file399.txt d8/file398.txt d7/file397.txt
git mv d0/file000.txt d0/renamed000.txt
for i in $(seq 0 19); do
    printf 'new file %d\n%s\n' "$i" "$(seq "$i" 3 200 | tr '\n' ' ')" >"d$((i % 10))/new$i.txt"
done
echo "== diff (unstaged)"
git diff --stat | tail -n 5
git diff | sha256sum
git add -A
echo "== diff --cached"
git diff --cached -M --stat --summary | tail -n 30
git status --porcelain | sort | sha256sum
commit_at 2 "modify rename add"

# 3. a string of small commits
for n in $(seq 3 22); do
    f=d$((n % 10))/file$(printf '%03d' $((n * 7 % 390))).txt
    printf 'appended by commit %d\n' "$n" >>"$f"
    sed -i "s/value \([0-9]*\)7 /value \1X /" "d$((n % 10))/new$((n % 20)).txt" 2>/dev/null || true
    git add -A
    commit_at "$n" "small $n"
done

# 4. history, diffs, blame, grep, tree listings
echo "== log"
git log --stat --format='%H %an %ad %s' --date=iso-strict | sha256sum
git log --oneline -n 5
git log --format=%H | wc -l | sed 's/^ */commits /'
echo "== diff HEAD~10 HEAD"
git diff --stat HEAD~10 HEAD | tail -n 3
git diff HEAD~10 HEAD | sha256sum
git diff -M HEAD~21 HEAD --name-status | sort | sha256sum
echo "== blame / grep / ls-tree"
git blame --porcelain d3/file021.txt | sha256sum
git grep -n 'fox jumps' -- 'd1/*' | sort | sha256sum
git grep -c value | sort | tail -n 3
git ls-tree -r HEAD | sha256sum
git archive --format=tar HEAD | sha256sum

# 5. gc and a full repack; the object set and history must survive unchanged
echo "== gc"
git gc -q
git count-objects -v | grep -E '^(count|in-pack|garbage):'
git repack -q -a -d -f --window=30 --depth=20
git fsck --full --no-progress --no-dangling
git cat-file --batch-check --batch-all-objects | sha256sum
git log --format=%H | sha256sum
git rev-parse HEAD HEAD~5 HEAD~21
git archive --format=tar HEAD | sha256sum
echo "== done"
