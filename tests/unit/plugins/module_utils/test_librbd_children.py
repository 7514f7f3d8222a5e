# -*- coding: utf-8 -*-
"""_librbd.LibRbd: python3-rbd calls in child processes, and the CLI as the way out when a child fails.

The children are real (``_librbd.serve_ops`` running ``InProcess`` in a fresh interpreter) over fake
``rados``/``rbd`` modules that keep a tiny cluster in a JSON file and can abort or hang in any call,
before or after doing its change.  The CLI side is a fake runner over the same file.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import threading
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _librbd as L
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError

FAKE_RADOS = '''
import json, os
class Error(Exception):
    pass
class ObjectNotFound(Error):
    pass
class Ioctx:
    def __init__(self, pool):
        self.pool = pool
    def set_namespace(self, ns):
        pass
    def close(self):
        pass
class Rados:
    def __init__(self, **kw):
        pass
    def connect(self, timeout=None):
        pass
    def open_ioctx(self, pool):
        if pool == 'nopool':
            raise ObjectNotFound('no pool')
        return Ioctx(pool)
    def shutdown(self):
        pass
'''

FAKE_RBD = '''
import datetime, json, os, time
STATE = os.environ['FAKE_STATE']
def _load():
    with open(STATE) as f:
        return json.load(f)
def _save(st):
    tmp = '%s.%d' % (STATE, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(st, f)
    os.rename(tmp, STATE)
def _fault(call, when):
    mode = json.loads(os.environ.get('FAKE_FAULTS', '{}')).get(call, '')
    if mode == when + 'abort':
        os.abort()
    if mode == when + 'hang':
        time.sleep(3600)
class Error(Exception):
    pass
class ImageNotFound(Error):
    errno = 2
class ImageExists(Error):
    errno = 17
class RBD:
    def list(self, ioctx):
        return sorted(_load())
    def create(self, ioctx, name, size, order=None):
        _fault('create', '')
        st = _load()
        if name in st:
            raise ImageExists('image exists')
        st[name] = dict(size=size, snaps=[], meta={}, order=order)
        _save(st)
        _fault('create', 'after-')
    def namespace_exists(self, ioctx, ns):
        return True
class Image:
    def __init__(self, ioctx, name, snapshot=None, read_only=False):
        if name not in _load():
            raise ImageNotFound('no such image')
        self.name = name
    def _do(self, call, fn):
        _fault(call, '')
        st = _load()
        out = fn(st[self.name])
        if call in ('metadata_set', 'metadata_remove', 'create_snap', 'remove_snap'):
            _save(st)
        _fault(call, 'after-')
        return out
    def stat(self):
        return self._do('stat', lambda i: dict(obj_size=4194304, num_objs=1))
    def size(self):
        return self._do('size', lambda i: i['size'])
    def list_snaps(self):
        return self._do('list_snaps', lambda i: [dict(s, size=i['size'], namespace=0) for s in i['snaps']])
    def is_protected_snap(self, name):
        return False
    def get_snap_timestamp(self, snap_id):
        return datetime.datetime(2026, 11, 26, 1, 0, 0)
    def diff_iterate(self, offset, length, from_snap, cb, include_parent=True, whole_object=False):
        _fault('diff_iterate', '')
        cb(0, 4096, True)
    def metadata_get(self, key):
        return self._do('metadata_get', lambda i: i['meta'][key])
    def metadata_list(self):
        return self._do('metadata_list', lambda i: list(i['meta'].items()))
    def metadata_set(self, key, value):
        return self._do('metadata_set', lambda i: i['meta'].__setitem__(key, value))
    def metadata_remove(self, key):
        return self._do('metadata_remove', lambda i: i['meta'].pop(key))
    def create_snap(self, name):
        def fn(i):
            i['snaps'].append(dict(id=max([s['id'] for s in i['snaps']] + [0]) + 1, name=name))
        return self._do('create_snap', fn)
    def remove_snap(self, name):
        return self._do('remove_snap', lambda i: i.__setitem__('snaps', [s for s in i['snaps'] if s['name'] != name]))
    def close(self):
        pass
'''


class FakeCli:
    """The rbd CLI over the same state file (only what LibRbd's way out uses)."""

    def __init__(self, state):
        self.state = state
        self.calls = []

    def __call__(self, argv, timeout, stdin_data=None):
        self.calls.append(argv)
        with open(self.state) as f:
            st = json.load(f)
        opt, words, i = {}, [], 1
        while i < len(argv):
            if argv[i] in ('--no-progress', '--whole-object'):
                i += 1
            elif argv[i].startswith('--'):
                opt[argv[i]] = argv[i + 1]
                i += 2
            else:
                words.append(argv[i])
                i += 1
        img = st.get(opt.get('--image'))
        if words[:1] == ['ls']:
            return 0, json.dumps(sorted(st)), ''
        if words[:1] == ['create']:
            if img is not None:
                return 17, '', 'rbd: create error: (17) File exists'
            st[opt['--image']] = dict(size=int(opt['--size'].rstrip('B')), snaps=[], meta={}, order=None)
            with open(self.state, 'w') as f:
                json.dump(st, f)
            return 0, '', ''
        if img is None:
            return 2, '', 'rbd: error opening image: (2) No such file or directory'
        out = ''
        if words[:2] == ['snap', 'create']:
            if opt['--snap'] in [s['name'] for s in img['snaps']]:
                return 17, '', 'rbd: failed to create snapshot: (17) File exists'
            img['snaps'].append(dict(id=max([s['id'] for s in img['snaps']] + [0]) + 1, name=opt['--snap']))
        elif words[:2] == ['snap', 'rm']:
            if opt['--snap'] not in [s['name'] for s in img['snaps']]:
                return 2, '', 'rbd: failed to remove snapshot: (2) No such file or directory'
            img['snaps'] = [s for s in img['snaps'] if s['name'] != opt['--snap']]
        elif words[:2] == ['snap', 'ls']:
            out = json.dumps([dict(s, size=img['size'], protected='false') for s in img['snaps']])
        elif words[:1] == ['info']:
            out = json.dumps(dict(name=opt['--image'], size=img['size'], object_size=4194304, objects=1))
        elif words[:1] == ['diff']:
            out = json.dumps([dict(offset=0, length=4096, exists='true')])
        else:
            return 1, '', 'fake cli: unexpected %r' % argv
        with open(self.state, 'w') as f:
            json.dump(st, f)
        return 0, out, ''


@pytest.fixture
def cluster(tmp_path):
    lib = tmp_path / 'lib'
    lib.mkdir()
    (lib / 'rados.py').write_text(FAKE_RADOS)
    (lib / 'rbd.py').write_text(FAKE_RBD)
    state = tmp_path / 'state.json'
    state.write_text(json.dumps(dict(img=dict(size=1 << 20, snaps=[dict(id=1, name='s1')], meta=dict(k='v')))))
    made = []

    def make(faults=None, **kw):
        env = dict(os.environ, PYTHONPATH=str(lib), FAKE_STATE=str(state), FAKE_FAULTS=json.dumps(faults or {}))
        kw.setdefault('stall', 3)
        c = L.LibRbd(conf='/nonexistent.conf', timeout=30, runner=FakeCli(str(state)), env=env, **kw)
        made.append(c)
        return c

    def snaps():
        return [s['name'] for s in json.loads(state.read_text())['img']['snaps']]
    make.snaps = snaps
    yield make
    for c in made:
        c.close()


def test_calls_go_to_a_child_and_answer_like_the_cli(cluster):
    c = cluster()
    assert c.info('p', 'img')['size'] == 1 << 20 and c.info('p', 'nope') is None
    assert [s['name'] for s in c.snapshots('p', 'img')] == ['s1']
    assert c.snapshots('p', 'img')[0]['timestamp'] == 'Thu Nov 26 01:00:00 2026'
    assert c.diff('p', 'img', snap='s1') == [(0, 4096, True)]
    assert c.meta_get('p', 'img', 'k') == 'v' and c.meta_list('p', 'img') == dict(k='v')
    assert c.list_images('p') == ['img'] and c.pool_exists('p') and not c.pool_exists('nopool')
    c.snap_create('p', 'img', 's2')
    c.snap_remove('p', 'img', 's1')
    assert cluster.snaps() == ['s2']
    assert c.runner.calls == [] and c.fallbacks == [] and c.failures == []


def test_a_librbd_error_is_the_same_rbd_error_and_no_fallback(cluster):
    c = cluster()
    with pytest.raises(RbdError) as ei:
        c.snapshots('p', 'nope')
    assert ei.value.rc == 2 and 'no such image' in str(ei.value) and ei.value.image == 'p/nope'
    assert c.fallbacks == [] and c.runner.calls == []


@pytest.mark.parametrize('fault, says', [
    ('abort', 'librbd helper died with SIGABRT'),
    ('hang', 'librbd helper stalled: nothing for 3 s (killed)'),
])
def test_a_dying_or_hanging_child_costs_one_cli_call(cluster, fault, says):
    from ansible.module_utils.common import warnings
    c = cluster(dict(list_snaps=fault))
    t0 = time.monotonic()
    snaps = c.snapshots('p', 'img')
    assert time.monotonic() - t0 < 20
    assert [s['name'] for s in snaps] == ['s1']              # the CLI's answer
    assert len(c.fallbacks) == 1 and c.fallbacks[0].startswith('snapshots p/img: ' + says)
    assert c.fallbacks[0].endswith('; done again with the rbd CLI')
    assert c.fallbacks[0] in warnings.get_warning_messages()
    assert len(c.runner.calls) == 1 and c.runner.calls[0][9:11] == ['snap', 'ls']
    assert c.info('p', 'img')['size'] == 1 << 20 and len(c.runner.calls) == 1    # a new child for the next call


@pytest.mark.parametrize('call, op', [('create_snap', 'snap_create'), ('remove_snap', 'snap_remove')])
def test_a_change_the_child_made_before_it_died_is_not_an_error(cluster, call, op):
    c = cluster({call: 'after-abort'})
    if op == 'snap_create':
        c.snap_create('p', 'img', 's2')
        assert cluster.snaps() == ['s1', 's2']
    else:
        c.snap_remove('p', 'img', 's1')
        assert cluster.snaps() == []
    assert len(c.fallbacks) == 1 and 'died with SIGABRT' in c.fallbacks[0]
    assert len(c.runner.calls) == 2              # the repeat (refused: already done), then the check


def test_create_in_a_child_with_the_object_size_as_order(cluster, tmp_path):
    c = cluster()
    c.create('p', 'new', 4096, object_size=1 << 22)
    st = json.loads((tmp_path / 'state.json').read_text())
    assert st['new'] == dict(size=4096, snaps=[], meta={}, order=22) and c.runner.calls == []
    with pytest.raises(RbdError) as ei:
        c.create('p', 'new', 4096)
    assert ei.value.rc == 17 and ei.value.image == 'p/new' and c.fallbacks == []


@pytest.mark.parametrize('fault, repeats', [('after-abort', 1), ('abort', 0)])
def test_a_create_the_child_may_have_made_is_made_or_accepted_by_the_cli(cluster, tmp_path, fault, repeats):
    c = cluster(dict(create=fault))
    c.create('p', 'new', 4096)
    st = json.loads((tmp_path / 'state.json').read_text())
    assert st['new']['size'] == 4096 and len(c.fallbacks) == 1
    # after the child made it, the CLI's create is refused (exists) and the check finds it as asked
    assert [a[9] for a in c.runner.calls][:1] == ['create'] and len(c.runner.calls) == 1 + 2 * repeats


def test_a_create_refused_for_an_image_that_is_not_the_one_asked_for(cluster):
    c = cluster(dict(create='abort'))
    with pytest.raises(RbdError):
        c.create('p', 'img', 4096)       # img exists already, of another size, with a snapshot


@pytest.mark.parametrize('size, order', [(None, None), (0, None), (1 << 22, 22), (4096, 12)])
def test_object_order(size, order):
    assert L.object_order(size) == order


def test_object_order_refuses_other_sizes():
    with pytest.raises(ValueError):
        L.object_order(3 << 20)


def test_a_helper_on_the_other_host_runs_the_shipped_modules(cluster):
    """The remote helper's argv (_remote.remote_child_argv) with ``sh -c`` for ssh: a fresh interpreter that
    finds our modules only in the zip the command carries."""
    import sys
    from ansible_collections.ceph_rbd.backup.plugins.module_utils import _remote
    c = cluster(child_argv=_remote.remote_child_argv(['sh', '-c'], python=sys.executable))
    assert [s['name'] for s in c.snapshots('p', 'img')] == ['s1']
    c.snap_create('p', 'img', 's2')
    assert cluster.snaps() == ['s1', 's2']
    assert c.runner.calls == [] and c.fallbacks == [] and c.unavailable is None


def test_no_helper_on_the_other_host_means_the_cli_said_once(cluster):
    from ansible.module_utils.common import warnings
    before = len(warnings.get_warning_messages())
    c = cluster(child_argv=lambda conn: ['sh', '-c', 'echo "rbd-ssh-guard: refused" >&2; exit 1'])
    for _i in range(3):
        assert [s['name'] for s in c.snapshots('p', 'img')] == ['s1']
    assert len(c.runner.calls) == 3 and c.fallbacks == [] and c.failures == []
    assert 'did not start' in c.unavailable or 'refused' in c.unavailable
    said = warnings.get_warning_messages()[before:]
    assert len(said) == 1 and said[0].startswith('no librbd helper on the other host')


def test_a_change_the_child_did_not_make_is_made_by_the_cli(cluster):
    c = cluster(dict(create_snap='abort', metadata_set='abort'))
    c.snap_create('p', 'img', 's2')
    assert cluster.snaps() == ['s1', 's2'] and len(c.fallbacks) == 1


def test_after_max_failures_only_the_cli(cluster):
    c = cluster(dict(stat='abort'))
    for _i in range(L.LibRbd.MAX_FAILURES + 2):
        assert c.info('p', 'img')['size'] == 1 << 20
    assert len(c.failures) == L.LibRbd.MAX_FAILURES
    assert c.fallbacks[-1].startswith('info p/img: librbd helpers off after 3 failures')


def test_threads_share_a_few_children(cluster):
    c = cluster(children=3)
    seen = set()
    real = L._worker.Worker

    def counting(*a, **kw):
        w = real(*a, **kw)
        seen.add(w.pid)
        return w
    L._worker.Worker = counting
    try:
        out = []
        threads = [threading.Thread(target=lambda: out.append(c.info('p', 'img')['size'])) for _i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        L._worker.Worker = real
    assert out == [1 << 20] * 16 and 1 <= len(seen) <= 3
    idle = list(c._idle)
    c.close()
    assert all(w.proc.poll() is not None for w in idle) and c._idle == []


def test_from_params_children_follow_parallel():
    assert L.LibRbd.from_params(dict(parallel=32)).children == 8
    assert L.LibRbd.from_params(dict(parallel=2)).children == 2
    assert L.LibRbd.from_params(dict()).children == 4
    assert isinstance(L.client(dict(), prefer_librbd=False), Rbd)


@pytest.mark.parametrize('helpers', [True, False])
def test_remote_helpers_off_means_the_cli_from_the_start(helpers):
    """remote.helpers=false: the other host's calls go to the rbd CLI without trying (or warning about) a
    helper; true (the default): through LibRbd, whose children start there."""
    from ansible_collections.ceph_rbd.backup.plugins.module_utils import _remote
    from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd
    params = dict(timeout=5, remote=dict(host='h', user=None, port=None, key=None, options=[], cipher=None,
                                         helpers=helpers, ceph=dict(user='backup-ro')))
    with _remote.Remote(params) as remote:
        assert isinstance(remote.rbd, L.LibRbd) is helpers and isinstance(remote.rbd, Rbd)
        assert remote.rbd.runner is remote.runner and '--id' in remote.rbd.argv('ls')
        if helpers:
            assert remote.rbd.child_argv is not None
    remote.rbd.close()                           # closing twice (the with block did once) is harmless
