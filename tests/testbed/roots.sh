#!/usr/bin/env bash
# Ceph releases other than the machine's own for the test bed (issue #19): one minimal root file system per
# release, made with debootstrap from a distribution that packages that release, holding its mon, osd,
# rbd, rados, python3-rbd, rbd-fuse, sshd and python3. tests/testbed/testbed.sh runs a cluster's daemons
# and its hosts' sshd inside the root of the cluster's release (see `inroot` there), so the modules run on
# those hosts with that release's client and bindings.
#
#   release  distribution (suite)                 Ceph
#   pacific  this machine (Debian 12)             16.2 - no root: the host's own packages
#   quincy   Ubuntu 22.04 (jammy + -updates)      17.2
#   reef     Debian 13 (trixie)                   18.2
#   squid    Ubuntu 24.04 (noble + -updates)      19.2
#   tentacle Debian testing (forky)               20.2 - a moving suite: what it packages today
#
# Usage: roots.sh build RELEASE   makes the root if it is not there yet (once, under a lock), prints its path
#        roots.sh path RELEASE    prints the path (empty for pacific)
#        roots.sh list            the releases this script knows
# Roots live in ${RBD_TESTBED_ROOTS:-/var/cache/rbd-testbed/roots}/RELEASE (about 0.9 GB each; ~40 s each
# to make here). Debian's keyring checks Debian's suites; the Ubuntu suites are checked with Debian 13's
# `ubuntu-keyring` (itself checked by Debian's keyring), so nothing is fetched unchecked. No mirror is
# named here: each debootstrap script's default mirror is used, and the update suites are added by
# rewriting the suite name in the sources line debootstrap wrote.
set -euo pipefail

ROOTS="${RBD_TESTBED_ROOTS:-/var/cache/rbd-testbed/roots}"
# Bump when the package list or the layout changes: a root made by an older recipe is made again.
RECIPE=3
PACKAGES=(ceph-mon ceph-osd ceph-common python3-rbd python3-rados rbd-fuse python3 openssh-server
          openssh-client zstd procps iproute2 fdisk xfsprogs e2fsprogs fuse2fs fuse3 util-linux mount)

log() { printf '[roots %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# release -> "distribution suite"
suite_of() {
  case "$1" in
    quincy) echo "ubuntu jammy" ;;
    reef) echo "debian trixie" ;;
    squid) echo "ubuntu noble" ;;
    tentacle) echo "debian forky" ;;
    *) die "unknown release '$1' (known: pacific quincy reef squid tentacle)" ;;
  esac
}

path_of() { [ "$1" = pacific ] || echo "$ROOTS/$1"; }

# Run a command chrooted into $1 with /proc, /sys and /dev mounted, in a mount namespace of its own (the
# mounts vanish with it).
in_root() {
  local r="$1"; shift
  unshare --mount --propagation private -- /bin/bash -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --rbind /dev "$r/dev" || exit 1
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"' \
    in_root "$r" "$@"
}

debootstrap_into() {
  local dist="$1" suite="$2" target="$3" tools keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  if [ "$suite" = trixie ]; then
    timeout 900 debootstrap --variant=minbase "$suite" "$target" >"$target.log" 2>&1 \
      || { tail -n 20 "$target.log" >&2; die "debootstrap $suite failed (log: $target.log)"; }
    return 0
  fi
  # Any other suite: Debian 12's debootstrap knows neither Ubuntu's suites after lunar nor Debian's after
  # trixie, and Debian 12 has no Ubuntu keyring; Debian 13's root has both (a newer debootstrap, and
  # ubuntu-keyring from Debian's archive).
  [ "$dist" = ubuntu ] && keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
  tools="$(build reef)"
  in_root "$tools" sh -c 'command -v debootstrap >/dev/null && [ -s /usr/share/keyrings/ubuntu-archive-keyring.gpg ] \
    || apt-get install -y -qq --no-install-recommends debootstrap ubuntu-keyring >/dev/null' \
    || die "could not install debootstrap and ubuntu-keyring in the $tools root"
  mkdir -p "$tools/mnt/target"
  local components=main
  [ "$dist" = ubuntu ] && components=main,universe
  unshare --mount --propagation private -- /bin/bash -c '
    tools=$1 target=$2 suite=$3
    mount -t proc proc "$tools/proc" && mount --rbind /dev "$tools/dev" && mount --bind "$target" "$tools/mnt/target" || exit 1
    exec chroot "$tools" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
      timeout 900 debootstrap --variant=minbase --components="$4" --keyring="$5" "$suite" /mnt/target' \
    debootstrap "$tools" "$target" "$suite" "$components" "$keyring" >"$target.log" 2>&1 \
    || { tail -n 20 "$target.log" >&2; die "debootstrap $suite failed (log: $target.log)"; }
  [ "$dist" = ubuntu ] || return 0
  # the release's fixes come in the -updates and -security suites
  local line
  line="$(grep -m1 "^deb .* $suite " "$target/etc/apt/sources.list")" || die "no sources line for $suite in $target"
  for s in updates security; do
    echo "${line/ $suite / $suite-$s }"
  done >>"$target/etc/apt/sources.list"
}

build() {
  local rel="$1" dist suite root tmp want lock
  [ "$rel" = pacific ] && return 0
  read -r dist suite <<<"$(suite_of "$rel")"
  root="$(path_of "$rel")"
  want="recipe $RECIPE: $dist $suite: ${PACKAGES[*]}"
  if [ -f "$root/.rbd-testbed-root" ] && [ "$(cat "$root/.rbd-testbed-root")" = "$want" ]; then
    echo "$root"; return 0
  fi
  mkdir -p "$ROOTS"
  exec {lock}>"$ROOTS/.$rel.lock"
  flock "$lock"
  if [ -f "$root/.rbd-testbed-root" ] && [ "$(cat "$root/.rbd-testbed-root")" = "$want" ]; then
    echo "$root"; return 0
  fi
  local start=$SECONDS
  log "$rel: making a $dist $suite root in $root"
  tmp="$root.new"
  rm -rf "$tmp" "$root"
  mkdir -p "$tmp"
  debootstrap_into "$dist" "$suite" "$tmp"
  # no service starts inside the root while packages install
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod 755 "$tmp/usr/sbin/policy-rc.d"
  # Valid-Until is not checked (signatures are): the archive reached here can be a copy older than a
  # testing suite's week-long validity (seen: forky's InRelease "expired" 30 days before this machine's date)
  in_root "$tmp" sh -c "apt-get -o Acquire::Check-Valid-Until=false update -qq && apt-get install -y -qq --no-install-recommends ${PACKAGES[*]}" \
    >>"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "$rel: installing Ceph in the root failed (log: $tmp.log)"; }
  in_root "$tmp" apt-get clean >/dev/null 2>&1 || true
  # sshd's privilege separation directory (no systemd in the root to make it)
  mkdir -p "$tmp/run/sshd"
  chmod 755 "$tmp/run/sshd"
  in_root "$tmp" sh -c 'ceph --version; python3 --version; dpkg-query -W -f "\${Version}\n" ceph-mon' \
    >"$tmp/.rbd-testbed-versions" 2>&1 || true
  echo "$want" >"$tmp/.rbd-testbed-root"
  mv "$tmp" "$root"
  mv "$tmp.log" "$root.log" 2>/dev/null || true
  log "$rel: root ready in $((SECONDS - start)) s: $(head -n1 "$root/.rbd-testbed-versions")"
  echo "$root"
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    build) [ $# -eq 2 ] || die "usage: $0 build RELEASE"; [ "$(id -u)" = 0 ] || die "must run as root"; build "$2" ;;
    path) [ $# -eq 2 ] || die "usage: $0 path RELEASE"; [ "$2" = pacific ] || suite_of "$2" >/dev/null; path_of "$2" ;;
    list) echo "pacific quincy reef squid" ;;
    *) die "usage: $0 build|path RELEASE | list" ;;
  esac
}

main "$@"
