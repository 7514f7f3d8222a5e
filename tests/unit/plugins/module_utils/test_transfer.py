# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transfer's decisions with the snapshot step's hints, on fake clients (the real thing: tests/integration)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _transfer as T
from ansible_collections.ceph_rbd.backup.plugins.module_utils._stream import DiffStreamStats


class FakeRbd:
    """In-memory images: name -> dict(snaps=[...], size=int, dirty=bool, written={snap: bool})."""

    def __init__(self, images):
        self.images = images
        self.calls = []

    def _img(self, image):
        return self.images.get(image)

    def snapshots_or_none(self, pool, image, namespace=None):
        self.calls.append(('snapshots', image))
        img = self._img(image)
        return None if img is None else [dict(s) for s in img['snaps']]

    snapshots = snapshots_or_none

    def meta_get(self, pool, image, key, namespace=None):
        self.calls.append(('meta_get', image))
        return None

    def info(self, pool, image, namespace=None, snap=None):
        self.calls.append(('info', image))
        img = self._img(image)
        return None if img is None else dict(name=image, size=img['size'], object_size=img.get('object_size'))

    def create(self, pool, image, size, namespace=None, object_size=None):
        self.calls.append(('create', image, size, object_size))
        self.images[image] = dict(snaps=[], size=size, written={}, object_size=object_size)

    def diff(self, pool, image, namespace=None, snap=None, from_snap=None, whole_object=False):
        self.calls.append(('diff', image, from_snap, snap))
        img = self._img(image)
        if snap is None:
            return [(0, 4096, True)] if img.get('dirty') else []
        return [(0, 4096, True)] if img['written'].get((from_snap, snap)) else []

    def snap_create(self, pool, image, snap, namespace=None):
        self.calls.append(('snap_create', image, snap))
        img = self._img(image)
        img['snaps'].append(dict(id=max([s['id'] for s in img['snaps']] + [0]) + 1, name=snap, size=img['size']))


SRC_SNAPS = [dict(id=3, name='backup-1', size=1 << 20), dict(id=7, name='backup-2', size=1 << 20)]


def sides(dest_size=1 << 20, written=False):
    src = FakeRbd({'a': dict(snaps=[dict(s) for s in SRC_SNAPS], size=1 << 20,
                             written={('backup-1', 'backup-2'): written})})
    dst = FakeRbd({'a': dict(snaps=[dict(id=1, name='backup-1', size=dest_size)], size=dest_size, written={})})
    return T.Side(src, 'rbd', remote_ssh=['ssh', 'src']), T.Side(dst, 'rbd'), src, dst


def hints(unchanged, previous='backup-1'):
    return dict(source_snapshots=[dict(s) for s in SRC_SNAPS], previous=previous, unchanged=unchanged)


@pytest.fixture
def streams(monkeypatch):
    """Record the streams instead of running rbd; the import 'creates' the end snapshot like import-diff."""
    sent = []

    def fake_stream(src, image, snapshot, base, dst, dest_image, opts, size=None):
        sent.append((image, base, snapshot))
        dst.rbd.snap_create(dst.pool, dest_image, snapshot)
        stats = DiffStreamStats()
        stats.seconds = 0.5     # relay() sets it
        return stats

    monkeypatch.setattr(T, 'stream_diff', fake_stream)
    return sent


def no_meta(rbd):
    rbd.meta_set = lambda *a, **k: rbd.calls.append(('meta_set',))
    rbd.meta_remove = lambda *a, **k: rbd.calls.append(('meta_remove',))


def test_unchanged_by_hints_asks_the_source_nothing_and_streams_nothing(streams):
    src, dst, src_rbd, dst_rbd = sides()
    r = T.transfer_image(src, dst, 'a', target='backup-2', hints=hints(True))
    assert r['action'] == 'incremental' and r['unchanged'] is True and r['bytes'] == 0
    assert src_rbd.calls == []
    assert ('snap_create', 'a', 'backup-2') in dst_rbd.calls
    assert streams == []


def test_changed_by_hints_streams_without_asking_the_source(streams):
    src, dst, src_rbd, dst_rbd = sides(written=True)
    no_meta(dst_rbd)
    r = T.transfer_image(src, dst, 'a', target='backup-2', hints=hints(False))
    assert 'unchanged' not in r
    assert streams == [('a', 'backup-1', 'backup-2')]
    assert src_rbd.calls == []


def test_without_hints_the_source_is_asked(streams):
    src, dst, src_rbd, dst_rbd = sides()
    r = T.transfer_image(src, dst, 'a', target='backup-2')
    assert r['unchanged'] is True
    assert ('snapshots', 'a') in src_rbd.calls and ('diff', 'a', 'backup-1', 'backup-2') in src_rbd.calls


def test_a_destination_of_another_size_gets_the_stream_even_when_the_source_is_unchanged(streams):
    # rbd diff shows no write for a grow, so the head size is checked too
    src, dst, src_rbd, dst_rbd = sides(dest_size=2 << 20)
    no_meta(dst_rbd)
    r = T.transfer_image(src, dst, 'a', target='backup-2', hints=hints(True))
    assert 'unchanged' not in r
    assert streams == [('a', 'backup-1', 'backup-2')]


def test_a_dirty_destination_is_refused_even_when_the_hints_say_unchanged(streams):
    src, dst, src_rbd, dst_rbd = sides()
    dst_rbd.images['a']['dirty'] = True
    with pytest.raises(T.RbdError, match='modified since its snapshot backup-1'):
        T.transfer_image(src, dst, 'a', target='backup-2', hints=hints(True))
    assert streams == [] and not [c for c in dst_rbd.calls if c[0] == 'snap_create']


@pytest.mark.parametrize('base_id, unchanged, expect', [
    (7, True, True),     # base is previous
    (9, True, True),     # base newer than previous: no write after previous, none after base
    (5, True, None),     # base older than previous: writes between them are unknown
    (7, False, False),   # base is previous and there was a write
    (5, False, False),   # an older base sees that write too
    (9, False, None),    # the write may be before a newer base
    (7, None, None),     # unknown stays unknown
])
def test_source_unchanged_by_hints(base_id, unchanged, expect):
    snaps = [dict(id=5, name='old'), dict(id=7, name='prev'), dict(id=9, name='mid'), dict(id=11, name='target')]
    base = dict((s['id'], s['name']) for s in snaps)[base_id]
    assert T.source_unchanged_by_hints(snaps, base, dict(previous='prev', unchanged=unchanged)) is expect


def test_source_unchanged_by_hints_ignores_names_it_does_not_know():
    snaps = [dict(id=5, name='prev'), dict(id=7, name='target')]
    assert T.source_unchanged_by_hints(snaps, 'other', dict(previous='prev', unchanged=True)) is None
    assert T.source_unchanged_by_hints(snaps, 'prev', dict(previous='gone', unchanged=True)) is None
    assert T.source_unchanged_by_hints(snaps, 'prev', {}) is None


@pytest.mark.parametrize('item, problem', [
    (dict(image='a'), None),
    (dict(image='a', source_snapshots=[dict(id=1, name='s')], previous='s', unchanged=False), None),
    (dict(image='a', source_snapshots='s1,s2'), 'source_snapshots must be a list'),
    (dict(image='a', source_snapshots=[dict(name='s')]), 'integer id'),
    (dict(image='a', source_snapshots=[dict(id=True, name='s')]), 'integer id'),
    (dict(image='a', unchanged='yes'), 'unchanged must be'),
    (dict(image='a', previous=3), 'previous must be'),
    (dict(image='a', object_size=4 << 20), None),
    (dict(image='a', object_size='4M'), 'object_size must be'),
    (dict(image='a', object_size=True), 'object_size must be'),
    (dict(image='a', object_size=512), 'object_size must be'),
])
def test_hints_problem(item, problem):
    got = T.hints_problem(item)
    if problem is None:
        assert got is None
    else:
        assert problem in got


def test_source_hints_compares_with_the_previous_prefixed_snapshot():
    rbd = FakeRbd({'a': dict(snaps=[dict(id=2, name='foreign', size=1), dict(id=3, name='backup-1', size=1),
                                    dict(id=4, name='manual', size=1), dict(id=7, name='backup-2', size=1)],
                             size=1, written={('backup-1', 'backup-2'): False})})
    h = T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-2')
    assert h['previous'] == 'backup-1' and h['unchanged'] is True
    assert [s['name'] for s in h['snapshots']] == ['foreign', 'backup-1', 'manual', 'backup-2']
    rbd.images['a']['written'][('backup-1', 'backup-2')] = True
    assert T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-2')['unchanged'] is False
    # a resize without a write is a change too
    rbd.images['a']['written'][('backup-1', 'backup-2')] = False
    rbd.images['a']['snaps'][-1]['size'] = 2
    assert T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-2')['unchanged'] is False
    # the first snapshot has nothing to compare with; a snapshot not made yet (check mode) neither
    assert T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-1')['unchanged'] is None
    h = T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-3')
    assert h['unchanged'] is None and h['previous'] == 'backup-2'


def test_source_hints_give_the_object_size_on_the_first_night_only():
    rbd = FakeRbd({'a': dict(snaps=[dict(id=3, name='backup-1', size=1)], size=1, written={}, object_size=1 << 22)})
    assert T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-1')['object_size'] == 1 << 22
    rbd.images['a']['snaps'].append(dict(id=4, name='backup-2', size=1))
    rbd.images['a']['written'][('backup-1', 'backup-2')] = True
    rbd.calls[:] = []
    assert 'object_size' not in T.source_hints(rbd, 'rbd', 'a', None, 'backup-', 'backup-2')
    assert ('info', 'a') not in rbd.calls      # a steady night costs no extra query


def first_sync_sides():
    src = FakeRbd({'a': dict(snaps=[dict(s) for s in SRC_SNAPS], size=3 << 20, written={}, object_size=1 << 21)})
    dst = FakeRbd({})
    no_meta(dst)
    return T.Side(src, 'rbd', remote_ssh=['ssh', 'src']), T.Side(dst, 'rbd'), src, dst


def test_a_first_sync_with_hints_creates_the_image_without_asking_the_source(streams):
    src, dst, src_rbd, dst_rbd = first_sync_sides()
    h = dict(source_snapshots=[dict(s) for s in SRC_SNAPS], previous=None, unchanged=None, object_size=1 << 21)
    r = T.transfer_image(src, dst, 'a', target='backup-2', hints=h)
    assert r['action'] == 'initial' and streams == [('a', None, 'backup-2')]
    assert src_rbd.calls == []
    # the target snapshot's size (not the head's), the source's object size
    assert ('create', 'a', 1 << 20, 1 << 21) in dst_rbd.calls


def test_a_first_sync_without_the_object_size_asks_the_source(streams):
    src, dst, src_rbd, dst_rbd = first_sync_sides()
    T.transfer_image(src, dst, 'a', target='backup-2', hints=hints(None, previous=None))
    assert src_rbd.calls == [('info', 'a')]
    assert ('create', 'a', 3 << 20, 1 << 21) in dst_rbd.calls


@pytest.mark.parametrize('size, shared, route', [
    (1 << 20, True, 'shared'),
    (T.SHARED_STREAM_MAX, True, 'shared'),
    (T.SHARED_STREAM_MAX + 1, True, 'own'),       # a big image may send a lot: a connection of its own
    (None, True, 'own'),                          # size unknown
    (1 << 20, False, 'own'),                      # no multiplexed connection (direct mode)
])
def test_stream_route(size, shared, route):
    assert T.stream_route(size, (['ssh', 'mux'], None) if shared else None) == route


def test_small_streams_run_over_the_shared_connection():
    opts = T.TransferOptions()
    src = T.Side(None, 'rbd', remote_ssh=['ssh', 'own'], shared_ssh=(['ssh', 'mux'], None))
    dst = T.Side(None, 'rbd')
    up, down = T._stage_lists(src, dst, ['rbd', 'export-diff'], ['rbd', 'import-diff'], opts, 'shared')
    assert up[0][1][:2] == ['ssh', 'mux'] and down == [('rbd import-diff', ['rbd', 'import-diff'])]
    up, _down = T._stage_lists(src, dst, ['rbd', 'export-diff'], ['rbd', 'import-diff'], opts)
    assert up[0][1][:2] == ['ssh', 'own']
    # push: the destination is the remote side
    push_src = T.Side(None, 'rbd')
    push_dst = T.Side(None, 'rbd', remote_ssh=['ssh', 'own'], shared_ssh=(['ssh', 'mux'], None))
    _up, down = T._stage_lists(push_src, push_dst, ['e'], ['i'], opts, 'shared')
    assert down[-1][1][:2] == ['ssh', 'mux']


@pytest.mark.parametrize('snaps, target, object_size, expect', [
    ([dict(id=1, name='s', size=4096)], 's', 1 << 22, (4096, 1 << 22)),
    ([dict(id=1, name='s', size=0)], 's', 1 << 22, (1, 1 << 22)),        # rbd create needs a size
    ([dict(id=1, name='s', size=4096)], 's', None, None),                 # not said: ask
    ([dict(id=1, name='s', size=4096)], 't', 1 << 22, None),              # target unknown: ask
])
def test_create_args(snaps, target, object_size, expect):
    from ansible_collections.ceph_rbd.backup.plugins.module_utils._plan import Facts
    assert T.create_args(Facts('a', 'a', target, snaps, object_size=object_size)) == expect


# -- import marks: whose, and whether that import is still alive ----------------------------------------------
def test_mark_round_trip_and_old_marks():
    v = T.mark_value('backup-2', 'run1', 'host-a', 1700000000)
    assert T.parse_mark(v) == dict(snapshot='backup-2', run='run1', host='host-a', time=1700000000)
    # a mark of an older release is the snapshot name alone: no run
    assert T.parse_mark('backup-2') == dict(snapshot='backup-2', run=None, host=None, time=None)
    assert T.parse_mark(None) is None


class Watched:
    """A destination whose image has watchers for the first ``busy`` seconds of a fake clock."""

    def __init__(self, busy):
        self.busy = busy
        self.now = 0.0
        self.polls = 0

    def watchers(self, pool, image, namespace=None):
        self.polls += 1
        return [dict(client=1)] if self.now < self.busy else []

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def claim(busy, mark_run, run='me', check_mode=False):
    w = Watched(busy)
    opts = T.TransferOptions(run=run, mark_wait=60, mark_quiet=4, check_mode=check_mode)
    mark = T.parse_mark(T.mark_value('backup-2', mark_run, 'h', 0))
    T.claim_mark(T.Side(w, 'rbd'), 'a', mark, opts, clock=w.clock, sleep=w.sleep)
    return w


@pytest.mark.parametrize('busy', [0, 30])
def test_a_dead_runs_mark_is_claimed_once_its_watch_is_gone(busy):
    # a killed import-diff's watch lingers ~30 s: wait it out, then the quiet period
    w = claim(busy, 'other')
    assert busy + 4 <= w.now < busy + 6


def test_a_live_import_of_another_run_is_never_touched():
    with pytest.raises(T.RbdError) as e:
        claim(busy=10 ** 6, mark_run='other')
    assert 'run other' in str(e.value) and 'still writing' in str(e.value) and 'not touching it' in str(e.value)


def test_own_marks_and_check_mode_need_no_claim():
    assert claim(busy=10 ** 6, mark_run='me').polls == 0
    assert claim(busy=10 ** 6, mark_run='other', check_mode=True).polls == 0
    # a mark without a run (older release, or ad hoc use) is claimed like another run's
    with pytest.raises(T.RbdError):
        claim(busy=10 ** 6, mark_run=None, run=None)


# -- the three transports' process lists (#13) ----------------------------------------------------------
def _argvs(stages):
    return [(label, argv[0]) for label, argv in stages]


@pytest.mark.parametrize('src_ssh, dst_ssh, up, down', [
    (['ssh', 'src'], None, [('ssh export-diff on the source', 'ssh')], [('rbd import-diff', 'rbd')]),
    (None, ['ssh', 'dst'], [('rbd export-diff', 'rbd')], [('ssh import-diff on the destination', 'ssh')]),
    (None, None, [('rbd export-diff', 'rbd')], [('rbd import-diff', 'rbd')]),          # direct: a local pipe
])
def test_stage_lists_per_transport(src_ssh, dst_ssh, up, down):
    src, dst = T.Side(None, 'rbd', remote_ssh=src_ssh), T.Side(None, 'rbd', remote_ssh=dst_ssh)
    upstream, downstream = T._stage_lists(src, dst, ['rbd', '--conf', '/s.conf', 'export-diff'],
                                          ['rbd', '--conf', '/d.conf', 'import-diff'], T.TransferOptions())
    assert (_argvs(upstream), _argvs(downstream)) == (up, down)


def test_direct_stage_lists_run_each_rbd_with_its_own_cluster_and_no_compression():
    src, dst = T.Side(None, 'rbd'), T.Side(None, 'rbd')
    export_argv, import_argv = ['rbd', '--conf', '/s.conf', 'export-diff'], ['rbd', '--conf', '/d.conf', 'import-diff']
    upstream, downstream = T._stage_lists(src, dst, export_argv, import_argv, T.TransferOptions(compression='zstd'))
    assert upstream == [('rbd export-diff', export_argv)] and downstream == [('rbd import-diff', import_argv)]
