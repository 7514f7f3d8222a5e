"""Rendezvous shares: every image exactly once, stable under membership changes (issue #11)."""

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _share

NAMES = ['vm-%d-disk-%d' % (i, d) for i in range(300) for d in range(2)]


def test_every_image_is_carried_by_exactly_one_member():
    members = ['src-a', 'src-b', 'src-c']
    parts = [_share.share(NAMES, members, m) for m in members]
    assert sorted(sum(parts, [])) == sorted(NAMES)
    assert all(len(p) > 0.25 * len(NAMES) for p in parts)        # 600 names, 3 members: ~200 each


def test_the_answer_does_not_depend_on_member_order_or_duplicates():
    assert _share.shares(NAMES, ['b', 'a']) == _share.shares(NAMES, ['a', 'b', 'a'])


def test_adding_a_member_moves_only_the_images_it_wins():
    before = dict((n, _share.owner(n, ['a', 'b'])) for n in NAMES)
    after = dict((n, _share.owner(n, ['a', 'b', 'c'])) for n in NAMES)
    moved = [n for n in NAMES if before[n] != after[n]]
    assert all(after[n] == 'c' for n in moved)
    assert 0.25 < len(moved) / len(NAMES) < 0.42                 # about a third


def test_removing_a_member_moves_only_its_own_images():
    before = dict((n, _share.owner(n, ['a', 'b', 'c'])) for n in NAMES)
    after = dict((n, _share.owner(n, ['a', 'c'])) for n in NAMES)
    assert [n for n in NAMES if before[n] != after[n]] == [n for n in NAMES if before[n] == 'b']


def test_a_single_host_or_no_shared_run_carries_everything():
    assert _share.share(NAMES[:5], ['only'], 'only') == NAMES[:5]
    assert _share.share(NAMES[:5], [], 'anyone') == NAMES[:5]
    assert _share.share(NAMES[:5], ['a', 'b'], 'not-a-member') == []


def test_owner_needs_members():
    with pytest.raises(ValueError):
        _share.owner('vm-1', [])


def test_a_group_key_keeps_the_images_of_one_group_on_one_host():
    key = dict((n, n.rsplit('-disk-', 1)[0]) for n in NAMES)          # vm-N: both disks of a VM
    members = ['a', 'b', 'c']
    for m in members:
        mine = _share.share(NAMES, members, m, key)
        assert all(('%s-disk-0' % n.rsplit('-disk-', 1)[0]) in mine for n in mine)
        assert all(('%s-disk-1' % n.rsplit('-disk-', 1)[0]) in mine for n in mine)
