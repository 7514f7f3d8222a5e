# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The attributes every module declares (community.general's style): each module says its support, or
    # lists one of the variants below for its kind.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing the clusters.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode), in diff mode.
'''

    # For modules that only read.
    READ_ONLY = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This module only reads; it runs the same in check mode.
  diff_mode:
    support: N/A
    details:
      - This module changes nothing, so there is no diff.
'''

    # For modules that create or remove prefixed snapshots: the diff is each image's snapshot list.
    SNAPSHOTS = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - Reports the snapshots that would be created, removed or kept; changes nothing.
  diff_mode:
    support: full
    details:
      - Shows each image's prefixed snapshots before and after.
'''
