#!/usr/bin/env bash
# Install what the tests, the demo and the benchmark need on a fresh Debian 12 machine:
# Debian's Ceph packages, sshd and zstd (apt), and a virtualenv (.venv) on /usr/bin/python3 with
# --system-site-packages so that Debian's python3-rbd/python3-rados import in it.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(ceph-mon ceph-osd ceph-common python3-rbd python3-rados python3-venv openssh-server openssh-client zstd iproute2 procps
      fdisk xfsprogs e2fsprogs   # fdisk, xfsprogs: rbd_file_restore (sfdisk) and its test images (mkfs.xfs)
      debootstrap util-linux     # the roots of the test bed's newer Ceph releases (tests/testbed/roots.sh)
      locales libc-l10n util-linux-locales)  # test_proc: the parsing under a German locale (de_DE via localedef)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import rbd' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi

# The collection must be importable as ansible_collections.ceph_rbd.backup.
mkdir -p .build/collections/ansible_collections/ceph_rbd
ln -sfn ../../../.. .build/collections/ansible_collections/ceph_rbd/backup
