# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which host of a run carries which image: rendezvous (highest random weight) hashing.

Every host of a run that serves the same source pool computes the same answer from the same inputs (the
image name and the run's members), with no coordination: an image goes to the member with the highest
``sha256(member NUL image)``.  Adding a member moves to it only the images it now wins (about 1/(n+1) of
them); removing one moves only its own images, spread over the others.  State lives in the clusters
(snapshots, marks, holds), so any member can carry an image on from its common base.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
from typing import Dict, Iterable, List, Optional, Sequence


def _weight(member: str, name: str) -> bytes:
    return hashlib.sha256(('%s\0%s' % (member, name)).encode('utf-8')).digest()


def owner(name: str, members: Sequence[str]) -> str:
    """Pure: the member that carries image ``name`` (members must not be empty)."""
    if not members:
        raise ValueError('no members to share %s among' % name)
    return max(sorted(set(members)), key=lambda m: _weight(m, name))


def share(names: Iterable[str], members: Sequence[str], member: str,
          key: Optional[Dict[str, str]] = None) -> List[str]:
    """Pure: the names (in their order) that ``member`` carries among ``members``.

    ``key`` maps a name to what is hashed instead (the images of one consistency group share a key, so
    one host snapshots them together). A member that is not among ``members`` carries nothing; with no
    members at all (a single host that did not take part in a shared run) it carries everything.
    """
    if not members:
        return list(names)
    return [n for n in names if owner((key or {}).get(n, n), members) == member]


def shares(names: Iterable[str], members: Sequence[str]) -> Dict[str, List[str]]:
    """Pure: member -> the names it carries (every member present, possibly with an empty list)."""
    out = dict((m, []) for m in sorted(set(members)))
    for n in names:
        out[owner(n, members)].append(n)
    return out
