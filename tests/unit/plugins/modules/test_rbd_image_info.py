# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.ceph_rbd.backup.plugins.modules.rbd_image_info import select_names

NAMES = ['vm-1', 'vm-2', 'vm-10', 'db-1', 'vm-1-scratch', 'VM-3', 'x[1]', 'a.b', '']


@pytest.mark.parametrize('include, exclude, expected', [
    (['*'], [], sorted(NAMES)),
    (['vm-*'], [], ['vm-1', 'vm-1-scratch', 'vm-10', 'vm-2']),
    (['vm-*'], ['*-scratch'], ['vm-1', 'vm-10', 'vm-2']),
    (['vm-?'], [], ['vm-1', 'vm-2']),                         # ? is exactly one character
    (['vm-[12]'], [], ['vm-1', 'vm-2']),
    (['vm-[!1]'], [], ['vm-2']),
    (['vm-*', 'db-*'], ['vm-1*'], ['db-1', 'vm-2']),
    (['vm-1'], [], ['vm-1']),                                 # exact name, not a prefix
    (['VM-*'], [], ['VM-3']),                                 # case-sensitive
    (['x[[]1]'], [], ['x[1]']),                               # literal bracket via a class
    (['a?b'], [], ['a.b']),
    (['*'], ['*'], []),
    ([], [], []),
    (['nomatch*'], [], []),
])
def test_select_names(include, exclude, expected):
    assert select_names(NAMES, include, exclude) == expected


def test_select_names_sorted_and_deduplicated_input_untouched():
    names = ['b', 'a', 'c']
    assert select_names(names, ['*'], ['c']) == ['a', 'b']
    assert names == ['b', 'a', 'c']
    assert select_names(iter(['z', 'y']), ['*'], []) == ['y', 'z']
