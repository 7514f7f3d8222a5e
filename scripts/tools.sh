# shellcheck shell=bash
# Sourced by scripts/lint.sh, scripts/docs.sh and scripts/release.sh: release and documentation tools,
# each in its own virtualenv under .build/tools/NAME, made on first use from PyPI. They stay out of .venv
# (tests/requirements.txt) so that their dependencies never clash with the ansible-core/ansible-lint pins
# there. A fresh machine has none of them; the first call installs, later calls only check the pins.
#
#   tool_venv NAME   makes/refreshes .build/tools/NAME and prints its bin directory
#
# The pins: a new version is taken on purpose (edit here), never by surprise in CI.

TOOLS_ROOT=${TOOLS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.build/tools}

# NAME -> pip requirements (space separated).
declare -A TOOL_REQUIREMENTS=(
  [antsibull-changelog]="antsibull-changelog==0.36.0 ansible-core>=2.19,<2.20"
  # antsibull-changelog and antsibull-docs read the collection's docs with ansible-doc: ansible-core of the
  # same minor as .venv's, so the changelog and the docs site show what ansible-doc there shows.
  # Sphinx and its theme build the HTML (scripts/docs.sh); pandoc (the binary in the pypandoc-binary wheel)
  # turns README.md's sections into the guides.
  [antsibull-docs]="antsibull-docs==2.28.0 ansible-core>=2.19,<2.20 sphinx==9.0.4 sphinx-ansible-theme==0.10.4 ansible-pygments==0.1.2 pypandoc-binary==1.17"
  # galaxy-importer brings its own ansible-core and ansible-lint (the versions Galaxy runs).
  [galaxy-importer]="galaxy-importer==0.4.44"
)

tool_venv() {
  local name=$1 dir req stamp
  dir=$TOOLS_ROOT/$name
  req=${TOOL_REQUIREMENTS[$name]:?unknown tool $name}
  stamp="$dir/.requirements"
  if [[ ! -x $dir/bin/python || ! -f $stamp || $(cat "$stamp") != "$req" ]]; then
    echo "tools: installing $req into $dir" >&2
    rm -rf "$dir"
    /usr/bin/python3 -m venv "$dir" >&2 || return 1
    # shellcheck disable=SC2086
    "$dir/bin/python" -m pip install -q --disable-pip-version-check $req >&2 || { rm -rf "$dir"; return 1; }
    printf '%s' "$req" >"$stamp"
  fi
  printf '%s\n' "$dir/bin"
}
