# -*- coding: utf-8 -*-
"""The librbd reader child (_worker) and the verify's fallback to ``rbd export`` when it fails.

The child here is the real one (``_worker.serve`` in a fresh interpreter) with fake ``rados``/``rbd``
modules put first on its path: they read images from files and can abort, hang, exit, kill themselves
or misread on request, which is what python3-rbd 16.2 did to the verify module.  The CLI side is a fake
``rbd`` script that ``cat``s the same files, so the fallback digest must equal the reader's.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import random
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _verify as V
from ansible_collections.ceph_rbd.backup.plugins.module_utils import _worker as W
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd

FAKE_RADOS = '''
import json, os, time
class Error(Exception):
    pass
class ObjectNotFound(Error):
    pass
def _mode():
    return json.loads(os.environ.get('FAKE_RBD', '{}'))
class Ioctx:
    def __init__(self, pool):
        self.pool = pool
    def set_namespace(self, ns):
        self.ns = ns
    def close(self):
        pass
class Rados:
    def __init__(self, **kw):
        self.kw = kw
    def connect(self, timeout=None):
        m = _mode().get('connect')
        if m == 'fail':
            raise Error('connect failed (fake)')
        if m == 'hang':
            time.sleep(3600)
    def open_ioctx(self, pool):
        return Ioctx(pool)
    def shutdown(self):
        if _mode().get('shutdown') == 'abort':
            os.abort()
'''

FAKE_RBD = '''
import json, os, signal, time
from rados import _mode
class Error(Exception):
    pass
class ImageNotFound(Error):
    pass
READS = {}
class Image:
    def __init__(self, ioctx, name, snapshot=None, read_only=False):
        self.name = name
        self.mode = _mode().get(name, '')
        if self.mode == 'missing':
            raise ImageNotFound('error opening image %s at snapshot %s' % (name, snapshot))
        self.f = open(os.path.join(_mode()['dir'], name), 'rb')
    def read(self, offset, length):
        n = READS[self.name] = READS.get(self.name, 0) + 1
        what, _, at = self.mode.partition('@')
        if at and n > int(at):
            if what == 'abort':
                os.abort()
            if what == 'hang':
                time.sleep(3600)
            if what == 'kill':
                os.kill(os.getpid(), signal.SIGKILL)
            if what == 'exit':
                os._exit(3)
            if what == 'short':
                length -= 1
            if what == 'slow':
                time.sleep(0.6)
            if what == 'noise':
                os.write(os.dup(2), b'noise')
                print('stray output')
        self.f.seek(offset)
        return self.f.read(length)
    def close(self):
        self.f.close()
'''

MiB = 1 << 20


class FakeRunner:
    """``rbd info``/``rbd diff`` answers per image."""

    def __init__(self, images, diffs):
        self.images, self.diffs = images, diffs

    def __call__(self, argv, timeout, stdin_data=None):
        image = argv[argv.index('--image') + 1]
        if 'info' in argv:
            return 0, json.dumps(dict(size=len(self.images[image]))), ''
        if 'diff' in argv:
            return 0, json.dumps(self.diffs[image]), ''
        return 1, '', 'unexpected %r' % argv


@pytest.fixture
def bed(tmp_path):
    """Images as files, a fake rbd CLI that exports them, fake python3-rbd modules for the child."""
    lib = tmp_path / 'lib'
    lib.mkdir()
    (lib / 'rados.py').write_text(FAKE_RADOS)
    (lib / 'rbd.py').write_text(FAKE_RBD)
    data = tmp_path / 'images'
    data.mkdir()
    script = tmp_path / 'fake-rbd'
    script.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --image ] && img=$2; shift; done\n'
                      'exec cat "%s/$img"\n' % data)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)

    class Bed:
        images, diffs = {}, {}

        def add(self, name, size=9 * MiB, seed=1):
            rng = random.Random(seed)
            image = rng.randbytes(size)
            (data / name).write_bytes(image)
            self.images[name] = image
            # three extents, one crossing a 4 MiB read chunk: several pieces per image
            self.diffs[name] = [dict(offset=4096, length=100, exists='true'),
                                dict(offset=3 * MiB, length=2 * MiB, exists='true'),
                                dict(offset=8 * MiB, length=4096, exists='false')]
            return name

        def rbd(self):
            return Rbd(runner=FakeRunner(self.images, self.diffs), binary=str(script), timeout=30)

        def reader(self, modes=None, stall=3, **kw):
            env = dict(os.environ, PYTHONPATH=str(lib), FAKE_RBD=json.dumps(dict(modes or {}, dir=str(data))))
            return V.WorkerReader(dict(conf='/nonexistent.conf'), timeout=kw.pop('timeout', 30), stall=stall,
                                  env=env, **kw)

        def expected(self, name):
            h = V.DataHasher(len(self.images[name]))
            for e in self.diffs[name]:
                h.begin(e['offset'])
                h.update(self.images[name][e['offset']:e['offset'] + e['length']])
            return h.hexdigest()

        def digest(self, reader, name):
            return V.digest_image(self.rbd(), 'p', None, name, 's', 'data', reader=reader)

    return Bed()


def test_the_child_reads_what_the_cli_exports(bed):
    bed.add('a')
    bed.add('b', seed=2)
    reader = bed.reader()
    try:
        for name in ('a', 'b'):
            r = bed.digest(reader, name)
            assert r['digest'] == bed.expected(name) and 'fallback' not in r
            assert r['bytes_read'] == 100 + 2 * MiB + 4096
        assert V.digest_image(bed.rbd(), 'p', None, 'a', 's', 'data')['digest'] == bed.expected('a')
        pid = reader.worker.pid
        assert bed.digest(reader, 'a')['digest'] == bed.expected('a')
        assert reader.worker.pid == pid               # one child for image after image
    finally:
        reader.close()
    assert reader.worker is None and reader.failures == []


@pytest.mark.parametrize('mode, says', [
    ('abort@1', 'librbd reader died with SIGABRT'),
    ('kill@0', 'librbd reader died with SIGKILL'),
    ('exit@2', 'librbd reader exited with rc 3'),
    ('hang@1', 'librbd reader stalled: nothing for 3 s (killed)'),
])
def test_a_dying_or_hanging_child_costs_a_cli_read_not_the_run(bed, mode, says):
    bed.add('a')
    bed.add('b', seed=2)
    reader = bed.reader({'a': mode})
    try:
        t0 = time.monotonic()
        r = bed.digest(reader, 'a')
        took = time.monotonic() - t0
        assert r['digest'] == bed.expected('a')             # the right digest, through rbd export
        assert r['bytes_read'] == 100 + 2 * MiB + 4096
        assert r['fallback'].startswith(says) and r['fallback'].endswith('; read again with rbd export')
        assert took < 20, took                              # the hang is cut at the 3 s stall bound
        assert len(reader.failures) == 1 and reader.worker is None
        # the next image gets a new child
        r = bed.digest(reader, 'b')
        assert r['digest'] == bed.expected('b') and 'fallback' not in r
    finally:
        reader.close()


def test_an_abort_says_what_librbd_printed(bed, tmp_path):
    bed.add('a')
    lib = tmp_path / 'lib'
    (lib / 'rbd.py').write_text(FAKE_RBD.replace(
        "            if what == 'abort':\n",
        "            if what == 'abort':\n"
        "                os.write(2, b\"terminate called after throwing an instance of 'std::system_error'\\n"
        "  what():  Invalid argument\\n\")\n"))
    reader = bed.reader({'a': 'abort@0'})
    try:
        r = bed.digest(reader, 'a')
    finally:
        reader.close()
    assert r['digest'] == bed.expected('a')
    assert r['fallback'] == ("librbd reader died with SIGABRT: terminate called after throwing an instance of "
                             "'std::system_error' / what():  Invalid argument; read again with rbd export")


def test_overall_deadline_cuts_a_child_that_trickles(bed):
    bed.add('a')
    # a piece every 0.6 s never stalls 3 s, but 3 pieces pass the image's deadline (1 s + 2.1 MiB at 8 MiB/s)
    reader = bed.reader({'a': 'slow@0'}, stall=3, timeout=1)
    try:
        t0 = time.monotonic()
        r = bed.digest(reader, 'a')
        assert time.monotonic() - t0 < 15
    finally:
        reader.close()
    assert r['digest'] == bed.expected('a') and r['fallback'].startswith('librbd reader timed out (killed)')


def test_a_clean_librbd_error_keeps_the_child(bed):
    bed.add('a')
    bed.add('b', seed=2)
    reader = bed.reader({'a': 'short@1'})
    try:
        r = bed.digest(reader, 'a')
        assert r['digest'] == bed.expected('a')
        assert r['fallback'].startswith('librbd reader failed: OSError: short read of')
        pid = reader.worker.pid
        assert bed.digest(reader, 'b')['digest'] == bed.expected('b')
        assert reader.worker.pid == pid and reader.failures == []
    finally:
        reader.close()


def test_a_missing_image_is_read_by_the_cli_which_says_so(bed):
    bed.add('a')
    bed.images['gone'] = b'x' * MiB            # rbd info/diff still answer, the export finds no file
    bed.diffs['gone'] = [dict(offset=0, length=10, exists='true')]
    reader = bed.reader({'gone': 'missing'})
    try:
        with pytest.raises(V.RbdError) as ei:
            bed.digest(reader, 'gone')
        assert 'rbd export failed' in str(ei.value)
        assert bed.digest(reader, 'a')['digest'] == bed.expected('a')
    finally:
        reader.close()


@pytest.mark.parametrize('connect', ['fail', 'hang'])
def test_a_child_that_cannot_connect(bed, connect):
    bed.add('a')
    reader = bed.reader({'connect': connect}, stall=2)
    try:
        r = bed.digest(reader, 'a')
    finally:
        reader.close()
    assert r['digest'] == bed.expected('a')
    assert r['fallback'].startswith('librbd reader failed: cannot connect to the cluster: connect failed'
                                    if connect == 'fail' else 'librbd reader stalled')


def test_reader_is_off_after_max_failures(bed):
    for i, name in enumerate('abcd'):
        bed.add(name, seed=i)
    reader = bed.reader(dict(a='abort@0', b='kill@0', c='abort@0'), max_failures=2)
    try:
        results = [bed.digest(reader, n) for n in 'abcd']
    finally:
        reader.close()
    assert [r['digest'] for r in results] == [bed.expected(n) for n in 'abcd']
    assert len(reader.failures) == 2
    assert results[2]['fallback'].startswith('librbd reader off after 2 failures (last: librbd reader died '
                                             'with SIGKILL')
    assert results[3]['fallback'].startswith('librbd reader off after 2 failures')


def test_stray_output_of_the_child_does_not_break_the_frames(bed):
    bed.add('a')
    reader = bed.reader({'a': 'noise@0'})
    try:
        r = bed.digest(reader, 'a')
    finally:
        reader.close()
    assert r['digest'] == bed.expected('a') and 'fallback' not in r


def test_a_crash_at_shutdown_is_harmless(bed):
    bed.add('a')
    reader = bed.reader({'shutdown': 'abort'})
    r = bed.digest(reader, 'a')
    reader.close()
    assert r['digest'] == bed.expected('a') and 'fallback' not in r


def test_an_abandoned_read_kills_the_child(bed):
    bed.add('a')
    reader = bed.reader()
    try:
        gen = reader.ranges('p', None, 'a', 's', V.normalize_extents(bed.diffs['a']))
        next(gen)
        worker = reader.worker
        gen.close()                        # left mid-image: the child is out of step, so it goes
        assert reader.worker is None and worker.proc.poll() is not None
        assert bed.digest(reader, 'a')['digest'] == bed.expected('a')
    finally:
        reader.close()


def test_a_child_that_cannot_start(bed):
    bed.add('a')
    reader = bed.reader(argv=['/nonexistent/python3'])
    r = bed.digest(reader, 'a')
    assert r['digest'] == bed.expected('a')
    assert r['fallback'].startswith('cannot start the librbd reader: [Errno 2]') and reader.worker is None


def test_no_pieces_no_child(bed):
    reader = bed.reader()
    assert list(reader.ranges('p', None, 'a', 's', [])) == [] and reader.worker is None


def test_the_parent_never_loads_librados():
    code = textwrap.dedent('''
        import sys
        sys.path.insert(0, %r)
        from ansible_collections.ceph_rbd.backup.plugins.module_utils import _verify
        print(sorted(m for m in ('rados', 'rbd') if m in sys.modules))
    ''' % os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', '.build', 'collections'))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_describe_exit():
    assert W.describe_exit(-6) == 'died with SIGABRT'
    assert W.describe_exit(-11) == 'died with SIGSEGV'
    assert W.describe_exit(3) == 'exited with rc 3'
    assert W.describe_exit(-200) == 'died with signal 200'
