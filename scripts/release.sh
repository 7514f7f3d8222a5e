#!/usr/bin/env bash
# Release the collection's changelog: turns the fragments in changelogs/fragments/ into a release entry of
# changelogs/changelog.yaml (the version galaxy.yml names) and writes CHANGELOG.rst and CHANGELOG.md.
#
# Usage: scripts/release.sh [--commit] [--date YYYY-MM-DD]
#   --commit   commit exactly what the release changed (the consumed fragments, changelogs/changelog.yaml,
#              CHANGELOG.rst, CHANGELOG.md) as "Release X.Y.Z"; nothing else is staged or committed
#   --date     the release date (default today, UTC)
#
# Run it last, on a clean changelogs/ (every fragment committed), after `make lint` passed. It checks first
# what scripts/lint.sh's gate "changelog" checks (fragments lint; a first release has no breaking changes,
# deprecations, removals or bugfixes), refuses a version that is already released, and lints the result.
# antsibull-changelog comes from its own virtualenv .build/tools/antsibull-changelog (scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/tools.sh
source scripts/tools.sh

commit=false
date=$(date -u +%Y-%m-%d)
while (($#)); do
  case $1 in
    --commit) commit=true ;;
    --date) date=${2:?--date needs YYYY-MM-DD}; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

bin=$(tool_venv antsibull-changelog)
export PATH="$bin:$PATH"
# antsibull-changelog lists the new modules, filters and the role with ansible-doc (its venv's ansible-core)
# on a copy of the collection; nothing of the user's collections path may shadow it.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS

version=$(python3 -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
[[ -n $version ]] || { echo "no version in galaxy.yml" >&2; exit 1; }

paths=(changelogs CHANGELOG.rst CHANGELOG.md)
dirty=$(git status --porcelain --untracked-files=all -- "${paths[@]}")
if [[ -n $dirty ]]; then
  echo "changelogs/ or CHANGELOG.* has uncommitted changes; commit them first (the release consumes every" >&2
  echo "fragment in the directory, and --commit must commit only the release):" >&2
  echo "$dirty" >&2
  exit 1
fi

echo "== checks before the release of $version"
bash scripts/lint.sh changelog || { echo "gate changelog failed: fix the fragments first" >&2; exit 1; }
if python3 - "$version" <<'EOF'
import sys, yaml
releases = (yaml.safe_load(open('changelogs/changelog.yaml')) or {}).get('releases') or {}
sys.exit(0 if sys.argv[1] in releases else 1)
EOF
then
  echo "$version is already released in changelogs/changelog.yaml: bump version in galaxy.yml first" >&2
  exit 1
fi

echo "== antsibull-changelog release --version $version --date $date"
antsibull-changelog release --version "$version" --date "$date" --reload-plugins
antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
for f in CHANGELOG.rst CHANGELOG.md; do
  [[ -s $f ]] || { echo "the release wrote no $f" >&2; exit 1; }
done
# The fragments are consumed (config keep_fragments: false); the gate must pass on the result too.
bash scripts/lint.sh changelog

git status --short -- "${paths[@]}"
if $commit; then
  git add -A -- "${paths[@]}"
  git commit -q -m "Release $version" -- "${paths[@]}"
  git log --oneline -1
else
  echo
  echo "released $version; to commit it:"
  echo "  git add -A -- ${paths[*]} && git commit -m 'Release $version' -- ${paths[*]}"
fi
echo "$ROOT/CHANGELOG.rst and CHANGELOG.md written"
