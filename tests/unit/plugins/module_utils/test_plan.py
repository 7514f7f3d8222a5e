# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every decision of a transfer, one row each: README "How a transfer decides", "Failure handling" and the
restore table. The clusters prove the steps (tests/integration); these rows prove the decisions."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _plan as P

MiB = 1 << 20
AS = 'vm.replaced-20261201T000000Z'
TMP = 'vm.rebuilding'


def snaps(*names, **sizes):
    """'name' or 'name:id' -> snapshot dicts; ids follow the order unless given."""
    out = []
    for i, n in enumerate(names):
        name, sid = n.partition(':')[::2]
        out.append(dict(id=int(sid) if sid else i + 1, name=name, size=sizes.get(name, MiB)))
    return out


SRC = snaps('backup-1', 'backup-2', 'backup-3')
OURS = dict(snapshot='backup-3', run='r1', host='h', time=0)


def facts(src=None, dst=(), target='backup-3', **kw):
    dst = None if dst is None else snaps(*dst)
    return P.Facts('vm', 'vm', target, SRC if src is None else src, dst, aside=AS, **kw)


def imp(base):
    return ('import', 'vm', base)


ROWS = [
    # id, facts, options, action, steps, flags
    ('no destination image: create it and send the whole image',
     facts(dst=None), {}, 'initial', [('create', 'vm'), imp(None)], dict(sends=True)),
    ('target already there: up to date, nothing to do',
     facts(dst=('backup-3',)), {}, 'up_to_date', [], {}),
    ('up to date with a leftover mark: only the mark goes',
     facts(dst=('backup-3',), mark=OURS), {}, 'up_to_date', [('unmark', 'vm')], {}),
    ('incremental from the newest common base',
     facts(dst=('backup-1', 'backup-2')), {}, 'incremental', [imp('backup-2')], dict(sends=True)),
    ('skipped days: the newest common snapshot, whatever is missing in between',
     facts(dst=('backup-1',)), {}, 'incremental', [imp('backup-1')], {}),
    ('several runs a day: base by snapshot id on the source, not by name',
     facts(src=snaps('backup-b:1', 'backup-a:2', 'backup-c:3'), dst=('backup-b', 'backup-a'), target='backup-c'),
     {}, 'incremental', [imp('backup-a')], {}),
    ('base deleted on the source: the next-newest common one',
     facts(src=snaps('backup-1', 'backup-3:3'), dst=('backup-1', 'backup-2')), {}, 'incremental',
     [imp('backup-1')], {}),
    ('base deleted on the destination: the next-newest common one',
     facts(dst=('backup-1',)), {}, 'incremental', [imp('backup-1')], {}),
    ('no common snapshot left: rebuilt under a temporary name, the old image kept aside',
     facts(dst=('other-1',)), {}, 'rebuild',
     [('create', TMP), ('import', TMP, None), ('rename', 'vm', AS), ('rename', TMP, 'vm')],
     dict(replaced_image=AS, sends=True)),
    ('rebuild after our own dead rebuild: its leftover goes first',
     facts(dst=('other-1',), tmp='ours'), {}, 'rebuild',
     [('remove', TMP), ('create', TMP), ('import', TMP, None), ('rename', 'vm', AS), ('rename', TMP, 'vm')], {}),
    ('an image without our snapshots and no mark is a foreign image: rebuilt, not overwritten',
     facts(dst=()), {}, 'rebuild',
     [('create', TMP), ('import', TMP, None), ('rename', 'vm', AS), ('rename', TMP, 'vm')], {}),
    ('our interrupted initial import (no snapshot, our mark): removed and imported again',
     facts(dst=(), mark=OURS), {}, 'initial', [('remove', 'vm'), ('create', 'vm'), imp(None)],
     dict(recovered=True)),
    ('interrupted incremental import (dirty head, our mark): rolled back, sent again from the same base',
     facts(dst=('backup-2',), mark=OURS, dirty=True, dirty_since='backup-2'), {}, 'incremental',
     [('rollback', 'vm', 'backup-2'), imp('backup-2')], dict(recovered=True, rolled_back=False)),
    ('destination written to, allow_rollback: rolled back to its newest snapshot',
     facts(dst=('backup-2',), dirty=True, dirty_since='backup-2'), dict(allow_rollback=True), 'incremental',
     [('rollback', 'vm', 'backup-2'), imp('backup-2')], dict(rolled_back=True, recovered=False)),
    ('source lost its newer snapshots: the head is compared with the destination\'s newest, the diff sent from the base',
     facts(src=snaps('backup-1', 'backup-3:3'), dst=('backup-1', 'backup-2'), dirty=True, dirty_since='backup-2',
           mark=OURS), {}, 'incremental', [('rollback', 'vm', 'backup-2'), imp('backup-1')], dict(recovered=True)),
    ('newest backup snapshot deleted by hand: its data is on the head, within what the diff rewrites: sent as is',
     facts(dst=('backup-1',), dirty=True, dirty_since='backup-1', dirty_covered=True, newest_deleted=True), {},
     'incremental', [imp('backup-1')], dict(head_rewritten=True, rolled_back=False)),
    ('... and with allow_rollback too: no rollback needed',
     facts(dst=('backup-1',), dirty=True, dirty_since='backup-1', dirty_covered=True, newest_deleted=True),
     dict(allow_rollback=True), 'incremental', [imp('backup-1')], dict(head_rewritten=True)),
    ('written inside what the diff rewrites, but no snapshot was deleted: a foreign write, rolled back when allowed',
     facts(dst=('backup-1',), dirty=True, dirty_since='backup-1', dirty_covered=True, newest_deleted=False),
     dict(allow_rollback=True), 'incremental', [('rollback', 'vm', 'backup-1'), imp('backup-1')],
     dict(rolled_back=True)),
    ('nothing written since the base, same size: the snapshot without a stream',
     facts(dst=('backup-2',), dirty=False, source_unchanged=True, dest_size=MiB), {}, 'incremental',
     [('snap', 'vm')], dict(unchanged=True, sends=False)),
    ('nothing written but the destination has another size (a grow shows no write): streamed',
     facts(dst=('backup-2',), dirty=False, source_unchanged=True, dest_size=2 * MiB), {}, 'incremental',
     [imp('backup-2')], dict(unchanged=False, sends=True)),
    ('unknown whether the source changed: streamed',
     facts(dst=('backup-2',), dirty=False, source_unchanged=None), {}, 'incremental', [imp('backup-2')], {}),
    ('unchanged source, our interrupted import: rolled back, then only the snapshot',
     facts(dst=('backup-2',), mark=OURS, dirty=True, dirty_since='backup-2', source_unchanged=True, dest_size=MiB),
     {}, 'incremental', [('rollback', 'vm', 'backup-2'), ('snap', 'vm')], dict(unchanged=True, recovered=True)),
    ('check mode, the target not made yet: planned as the newest, the base kept too',
     facts(dst=('backup-1', 'backup-2'), target='backup-9'), dict(check_mode=True), 'incremental',
     [imp('backup-2')], dict(keep=['backup-9', 'backup-2'])),
    ('restore to a new image: created and sent whole',
     facts(dst=None), dict(restore=True), 'initial', [('create', 'vm'), imp(None)], {}),
    ('restore onto an image that holds the snapshot: rolled back, nothing travels',
     facts(dst=('backup-2', 'backup-3')), dict(restore=True, overwrite=True), 'rollback',
     [('rollback', 'vm', 'backup-3')], dict(sends=False)),
    ('restore onto an image with an older common snapshot: rolled back to it, the diff sent',
     facts(dst=('backup-1', 'backup-2')), dict(restore=True, overwrite=True), 'incremental',
     [('rollback', 'vm', 'backup-2'), imp('backup-2')], {}),
    ('restore onto an image with nothing in common: rebuilt',
     facts(dst=('other-1',)), dict(restore=True, overwrite=True), 'rebuild',
     [('create', TMP), ('import', TMP, None), ('rename', 'vm', AS), ('rename', TMP, 'vm')], {}),
]

REFUSALS = [
    ('destination written to since its snapshot: refused with the way out',
     facts(dst=('backup-2',), dirty=True, dirty_since='backup-2'), {},
     'modified since its snapshot backup-2', 'dest'),
    ('newest snapshot deleted, but written outside what the diff rewrites (a foreign write too): refused',
     facts(dst=('backup-1',), dirty=True, dirty_since='backup-1', dirty_covered=False, newest_deleted=True), {},
     'modified since its snapshot backup-1', 'dest'),
    ('written inside what the diff rewrites, no snapshot deleted (the soak found this must stay refused)',
     facts(dst=('backup-1',), dirty=True, dirty_since='backup-1', dirty_covered=True, newest_deleted=False), {},
     'modified since its snapshot backup-1', 'dest'),
    ('a rebuild whose temporary name is taken by an image that is not ours',
     facts(dst=('other-1',), tmp='foreign'), {}, 'vm.rebuilding exists and is not ours', 'dest'),
    ('no prefixed snapshot on the source',
     facts(src=snaps('manual'), target=None), {}, "no snapshot with prefix 'backup-'", 'source'),
    ('the requested snapshot is not on the source',
     facts(target='backup-9'), {}, 'snapshot backup-9 does not exist on the source', 'source'),
    ('restore onto an existing image without overwrite',
     facts(dst=('backup-1',)), dict(restore=True), 'refusing to overwrite it', 'dest'),
]


@pytest.mark.parametrize('name, f, options, action, steps, flags', ROWS, ids=[r[0] for r in ROWS])
def test_plan(name, f, options, action, steps, flags):
    p = P.plan(f, **options)
    assert p.error is None, p.error
    assert (p.action, p.steps) == (action, steps)
    defaults = dict(sends=any(s[0] == 'import' for s in steps), recovered=False, rolled_back=False, head_rewritten=False,
                    unchanged=False, replaced_image=AS if action == 'rebuild' else None,
                    keep=[f.target] + (['backup-2'] if options.get('check_mode') else []))
    defaults.update(flags)
    for k, v in defaults.items():
        assert getattr(p, k) == v, (k, getattr(p, k), v)


@pytest.mark.parametrize('name, f, options, message, side', REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_plan_nothing(name, f, options, message, side):
    p = P.plan(f, **options)
    assert message in p.error and p.error_side == side and p.steps == [] and p.action is None


def test_allow_rollback_lets_a_foreign_write_be_undone_only_when_asked():
    f = facts(dst=('backup-2',), dirty=True, dirty_since='backup-2')
    assert P.plan(f).error and P.plan(f, allow_rollback=True).error is None


def test_describe_reads_like_the_plan():
    p = P.plan(facts(dst=('backup-2',), mark=OURS, dirty=True, dirty_since='backup-2'))
    assert p.describe() == ['rollback vm backup-2', 'import into vm from backup-2']
    assert P.plan(facts(dst=None)).describe() == ['create vm', 'import into vm (whole image)']
    assert P.plan(facts(dst=None)).as_dict()['steps'] == ['create vm', 'import into vm (whole image)']


@pytest.mark.parametrize('outer, inner, expected', [
    ([(0, 4096, True)], [(0, 4096, True)], True),
    ([(0, 4096, True), (4096, 4096, False)], [(1000, 5000, True)], True),      # adjacent extents merge
    ([(0, 4096, True)], [(0, 4097, True)], False),
    ([(0, 4096, True), (8192, 10, True)], [(4096, 10, True)], False),           # a gap
    ([], [], True),
    ([], [(0, 1, True)], False),
    ([(10, 5, True), (0, 12, True)], [(0, 15, True)], True),                    # unsorted, overlapping
])
def test_covers(outer, inner, expected):
    assert P.covers(outer, inner) is expected
