# -*- coding: utf-8 -*-
"""Make the collection importable as ``ansible_collections.ceph_rbd.backup`` for the unit tests.

The repository root *is* the collection root; ``.build/collections`` holds a symlink
tree ``ansible_collections/ceph_rbd/backup -> ../../../..`` (created here if missing).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
COLLECTIONS = os.path.join(REPO_ROOT, '.build', 'collections')
_LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'ceph_rbd', 'backup')

if not os.path.lexists(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    try:
        os.symlink(os.path.join('..', '..', '..', '..'), _LINK)
    except FileExistsError:  # another process created it concurrently
        pass

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
