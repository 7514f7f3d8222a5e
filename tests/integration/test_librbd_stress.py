"""Stress of the in-process librbd paths (issue #12, item 3), each trial in a subprocess of its own.

python3-rbd 16.2 aborted (std::system_error, mutex assertion, segfault) or hung (rbd_open_read_only) now
and then in the verify module.  Here every trial runs one access pattern over many images in a fresh
``python`` process, so an abort is seen as a signal or an exit code, and a hang as a per-trial timeout.

Patterns (``trial_*`` below):

- ``aio_threads``: the verify of d4116cf/e0bef3c: one shared LibRbd connection, info/diff in-process,
  8 images at once, each read with ``aio_read`` (READ_DEPTH in flight); at exit the connection is left to
  garbage collection (``--exit gc``, d4116cf) or shut down by atexit (e0bef3c, the default).
- ``sync_threads``: the same with synchronous reads (the state between e0bef3c and f9d08fd).
- ``serial``: the verify of b3c1ca6..abcf015: queries through the CLI, synchronous reads one image at a
  time on a connection of their own, shut down explicitly.
- ``queries``: what rbd_snapshot/rbd_snapshot_prune/rbd_diff_transfer do through ``_librbd.LibRbd``:
  info, snap ls, diff, metadata and snap create/remove in 32 threads on one shared connection, with
  ``subprocess`` children started from those threads (as rbd_diff_transfer's streams are).
- ``worker``: the verify as it is now: queries through the CLI, reads in a child process
  (``_verify.WorkerReader``), one image at a time.

Figures for a long run (not part of the test run)::

    . /tmp/rbd-testbed/env.sh
    python tests/integration/test_librbd_stress.py --trials 40 --patterns aio_threads,sync_threads,serial,queries,worker

In the test run: ``STRESS_TRIALS`` (default 3) trials of ``worker`` and ``queries`` over ``STRESS_IMAGES``
(default 12) images, about 60 s on the loaded 2-core test machine; ``STRESS_TRIALS=100`` for a long run.
"""

import argparse
import atexit
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
COLLECTIONS = REPO / '.build' / 'collections'
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

MiB = 1 << 20
TRIAL_TIMEOUT = float(os.environ.get('STRESS_TRIAL_TIMEOUT', 60))


# -- the trials (run in a child: python test_librbd_stress.py --trial PATTERN SPEC) ----------------------

def _imports():
    from ansible_collections.ceph_rbd.backup.plugins.module_utils import _verify, _librbd, _parallel, _rbd
    return _verify, _librbd, _parallel, _rbd


class OldAioReader:
    """The aio reader of d4116cf (READ_DEPTH 8) / e0bef3c (READ_DEPTH 4), as it was."""

    def __init__(self, cluster, depth=8, timeout=300):
        self.cluster, self.depth, self.timeout = cluster, depth, timeout

    def ranges(self, pool, namespace, image, snap, extents):
        import rbd as librbd
        _verify, _librbd, _parallel, _rbd = _imports()
        pieces = []
        for off, length, _x in extents:
            pos, end = off, off + length
            while pos < end:
                n = min(_verify.READ_CHUNK, end - pos)
                pieces.append((off, length, pos, n))
                pos += n
        ioctx = self.cluster.open_ioctx(pool)
        window = collections.deque()
        try:
            if namespace:
                ioctx.set_namespace(namespace)
            img = librbd.Image(ioctx, image, snapshot=snap, read_only=True)
            try:
                todo = iter(pieces)

                def submit():
                    piece = next(todo, None)
                    if piece is None:
                        return
                    box = dict(event=threading.Event())

                    def done(completion, data):
                        box['rc'] = completion.get_return_value()
                        box['data'] = data
                        box['event'].set()
                    img.aio_read(piece[2], piece[3], done)
                    window.append((piece, box))

                for _i in range(self.depth):
                    submit()
                while window:
                    piece, box = window.popleft()
                    if not box['event'].wait(self.timeout + 30):
                        raise _rbd.RbdError('read of %d bytes at %d timed out' % (piece[3], piece[2]))
                    if box['rc'] < 0 or len(box['data'] or b'') != piece[3]:
                        raise _rbd.RbdError('read of %d bytes at %d failed (rc=%s)' % (piece[3], piece[2], box['rc']))
                    submit()
                    yield piece[0], piece[1], box['data']
            finally:
                for _piece, box in window:
                    box['event'].wait(self.timeout + 30)
                img.close()
        finally:
            ioctx.close()


class OldSyncReader:
    """The in-process synchronous reader of f9d08fd..abcf015 (``_verify.LibrbdReader``), as it was."""

    def __init__(self, cluster, timeout=300):
        self.cluster, self.timeout = cluster, timeout

    def ranges(self, pool, namespace, image, snap, extents):
        import rbd as librbd
        _verify, _librbd, _parallel, _rbd = _imports()
        ioctx = self.cluster.open_ioctx(pool)
        try:
            if namespace:
                ioctx.set_namespace(namespace)
            img = librbd.Image(ioctx, image, snapshot=snap, read_only=True)
            try:
                for off, length, _x in extents:
                    pos, end = off, off + length
                    while pos < end:
                        n = min(_verify.READ_CHUNK, end - pos)
                        data = img.read(pos, n)
                        if len(data) != n:
                            raise _rbd.RbdError('short read of %d bytes at %d (got %d)' % (n, pos, len(data)))
                        yield off, length, data
                        pos += n
            finally:
                img.close()
        finally:
            ioctx.close()


def _digests(spec, rbd, reader, workers):
    _verify, _librbd, _parallel, _rbd = _imports()

    def work(item):
        return _verify.digest_image(rbd, spec['pool'], None, item['image'], item['snapshot'], 'data',
                                    from_snapshot=item.get('from_snapshot'), reader=reader)
    out = {}
    for item, result, error in _parallel.run_all(spec['items'], work, workers):
        out[item['image']] = result['digest'] if error is None else 'error: %s' % error
    return out


def trial_aio_threads(spec):
    _verify, _librbd, _parallel, _rbd = _imports()
    conn = _librbd.InProcess(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60)
    cluster = conn.cluster
    if spec.get('exit') == 'gc':            # d4116cf: no shutdown, garbage collection at exit
        atexit.unregister(conn.close)
    return _digests(spec, conn, OldAioReader(cluster, spec.get('depth', 8)), spec.get('threads', 8))


def trial_sync_threads(spec):
    _verify, _librbd, _parallel, _rbd = _imports()
    conn = _librbd.InProcess(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60)
    if spec.get('exit') == 'gc':
        conn.cluster
        atexit.unregister(conn.close)
    return _digests(spec, conn, OldSyncReader(conn.cluster), spec.get('threads', 8))


def trial_serial(spec):
    _verify, _librbd, _parallel, _rbd = _imports()
    cli = _rbd.Rbd(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60)
    conn = _librbd.InProcess(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60)
    try:
        return _digests(spec, cli, OldSyncReader(conn.cluster), 1)
    finally:
        conn.close()


def trial_worker(spec):
    _verify, _librbd, _parallel, _rbd = _imports()
    cli = _rbd.Rbd(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60)
    reader = _verify.WorkerReader(dict(conf=spec['conf'], keyring=spec['keyring'], user=spec['user']), timeout=60)
    try:
        out = _digests(spec, cli, reader, spec.get('threads', 8))
    finally:
        reader.close()
    if reader.failures:
        out['_fallbacks'] = reader.failures
    return out


def trial_queries(spec, inproc=False):
    """rbd_snapshot + rbd_snapshot_prune + the transfer's queries, in threads on one LibRbd (now: children
    with the CLI as the way out) or, ``queries_inproc``, on one in-process connection (before)."""
    _verify, _librbd, _parallel, _rbd = _imports()
    threads = spec.get('threads', 32)
    if inproc:
        conn = _librbd.InProcess(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60)
    else:
        conn = _librbd.LibRbd(conf=spec['conf'], keyring=spec['keyring'], user=spec['user'], timeout=60,
                              children=min(threads, 8))
    pool = spec['pool']
    tag = 'stress-%d' % os.getpid()

    def work(item):
        image = item['image']
        snaps = conn.snapshots_or_none(pool, image)
        info = conn.info(pool, image, snap=item['snapshot'])
        ext = conn.diff(pool, image, snap=item['snapshot'], from_snap=item.get('from_snapshot'))
        conn.meta_set(pool, image, 'ceph_rbd_backup.stress', tag)
        conn.meta_list(pool, image)
        conn.snap_create(pool, image, tag)
        if spec.get('popen', True):
            subprocess.run(['true'], check=True)      # a stream process started next to librados threads
        conn.diff(pool, image, snap=tag, from_snap=item['snapshot'])
        conn.snapshots(pool, image)
        conn.snap_remove(pool, image, tag)
        conn.meta_remove(pool, image, 'ceph_rbd_backup.stress')
        return '%d/%d/%d' % (len(snaps), info['size'], len(ext))

    out = {}
    for item, result, error in _parallel.run_all(spec['items'], work, threads):
        out[item['image']] = result if error is None else 'error: %s' % error
    if getattr(conn, 'fallbacks', None):
        out['_fallbacks'] = conn.fallbacks
    return out


TRIALS = dict(aio_threads=trial_aio_threads, sync_threads=trial_sync_threads, serial=trial_serial,
              worker=trial_worker, queries=trial_queries,
              queries_inproc=lambda spec: trial_queries(spec, inproc=True))


def trial_main(pattern, spec_json):
    import faulthandler
    faulthandler.dump_traceback_later(max(TRIAL_TIMEOUT - 5, 1))      # where a hung trial waits, on stderr
    spec = json.loads(spec_json)
    out = TRIALS[pattern](spec)
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()


# -- the harness (runs in pytest or as a script) -----------------------------------------------------

def run_trial(pattern, spec, timeout=TRIAL_TIMEOUT):
    """One trial in a fresh process group; an outcome dict (ok / wrong / error / crash / hang)."""
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), PYTHONFAULTHANDLER='1')
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(HERE), '--trial', pattern, json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        hung = True
    seconds = time.monotonic() - t0
    rc = proc.returncode
    err = err.decode('utf-8', 'replace')
    res = dict(pattern=pattern, rc=rc, seconds=round(seconds, 2), stderr=err if len(err) < 8000 else err[:4000] + '\n...\n' + err[-4000:])
    if hung:
        res['outcome'] = 'hang'
    elif rc < 0:
        res['outcome'] = 'crash'
        res['signal'] = signal.Signals(-rc).name
    elif rc != 0:
        res['outcome'] = 'error'
    else:
        got = json.loads(out.decode().strip().splitlines()[-1])
        res['fallbacks'] = got.pop('_fallbacks', None)
        want = spec.get('expect') or {}
        bad = dict((k, v) for k, v in got.items() if k in want and v != want[k])
        errors = dict((k, v) for k, v in got.items() if str(v).startswith('error'))
        res['outcome'] = 'wrong' if bad else 'image-error' if errors else 'ok'
        if bad or errors:
            res['detail'] = dict(list(bad.items())[:3] + list(errors.items())[:3])
    return res


def make_images(cluster, pool, count, size=64 * MiB, seed=0):
    """``count`` sparse images, each with snapshots s1 and s2 and data written before and between them."""
    import rados  # noqa: F401
    import rbd as librbd
    import random
    rng = random.Random(seed)
    items = []
    with cluster.cluster.open_ioctx(pool) as io:
        for i in range(count):
            name = 'img-%03d' % i
            librbd.RBD().create(io, name, size, old_format=False)
            with librbd.Image(io, name) as img:
                for _j in range(6):
                    img.write(rng.randbytes(rng.choice((4096, 65536, 1 << 20))), rng.randrange(0, size - MiB))
                img.create_snap('s1')
                for _j in range(4):
                    img.write(rng.randbytes(rng.choice((4096, 65536, 1 << 20))), rng.randrange(0, size - MiB))
                img.create_snap('s2')
            # half from s1 (a few extents), half whole (every allocated extent)
            items.append(dict(image=name, snapshot='s2', from_snapshot='s1' if i % 2 else None))
    return items


def expected_results(bed, pool, items):
    """Through the CLI alone (rbd diff + rbd export): every image's digest, and what ``queries`` sees."""
    _verify, _librbd, _parallel, _rbd = _imports()
    cli = _rbd.Rbd(conf=bed.src.conf, keyring=bed.src.keyring, user='admin', timeout=60)
    digests, queries = {}, {}
    for item in items:
        r = _verify.digest_image(cli, pool, None, item['image'], item['snapshot'], 'data',
                                 from_snapshot=item.get('from_snapshot'))
        digests[item['image']] = r['digest']
        queries[item['image']] = '%d/%d/%d' % (len(cli.snapshots(pool, item['image'])), r['size'],
                                               len(r['extents']))
    return dict(digests=digests, queries=queries)


def summarize(results):
    by = collections.OrderedDict()
    for r in results:
        s = by.setdefault(r['pattern'], collections.Counter())
        s[r['outcome']] += 1
        s['trials'] += 1
        if r.get('fallbacks'):
            s['fallbacks'] += len(r['fallbacks'])
    return by


# -- pytest ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def stress_pool(bed):
    pool = 'crash-%d' % os.getpid()
    bed.src.create_pool(pool)
    try:
        items = make_images(bed.src, pool, int(os.environ.get('STRESS_IMAGES', 12)))
        yield pool, items, expected_results(bed, pool, items)
    finally:
        bed.src.remove_pool(pool)


def _spec(bed, pool, items, pattern, expect, **extra):
    spec = dict(conf=bed.src.conf, keyring=bed.src.keyring, user='admin', pool=pool, items=items,
                expect=expect['queries' if pattern.startswith('queries') else 'digests'])
    spec.update(extra)
    return spec


@pytest.mark.parametrize('pattern', ['worker', 'queries'])
def test_no_trial_crashes_or_hangs(bed, stress_pool, pattern):
    """The in-process paths the collection uses now: N trials, none may crash, hang or digest wrongly."""
    pool, items, expect = stress_pool
    trials = int(os.environ.get('STRESS_TRIALS', 3))
    results = [run_trial(pattern, _spec(bed, pool, items, pattern, expect)) for _i in range(trials)]
    bad = [r for r in results if r['outcome'] != 'ok']
    assert not bad, json.dumps(bad, indent=1)[-4000:]


class KillingReader:
    """The real WorkerReader; its child is killed with ``sig`` once the first chunk has arrived."""

    def __init__(self, reader, sig):
        self.reader, self.sig, self.killed = reader, sig, None

    def ranges(self, *args):
        for i, piece in enumerate(self.reader.ranges(*args)):
            if i == 0 and self.killed is None:
                self.killed = self.reader.worker.pid
                os.kill(self.killed, self.sig)
            yield piece


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGABRT])
def test_a_reader_killed_mid_read_still_gives_the_right_digest(bed, stress_pool, sig):
    """Kill the real reader child after its first 4 MiB: the digest comes through rbd export, the same as
    an independent one over ``rbd export | slice the extents``, and the image's result says what happened."""
    _verify, _librbd, _parallel, _rbd = _imports()
    import rbd as librbd
    import random
    pool = stress_pool[0]
    name = 'kill-%s' % sig.name
    with bed.src.cluster.open_ioctx(pool) as io:       # 20 MiB written in 64 MiB: read piece by piece
        librbd.RBD().create(io, name, 64 * MiB, old_format=False)
        with librbd.Image(io, name) as img:
            for i in range(5):
                img.write(random.Random(i).randbytes(4 * MiB), (3 + 11 * i) * MiB)
            img.create_snap('s')
    cli = _rbd.Rbd(conf=bed.src.conf, keyring=bed.src.keyring, user='admin', timeout=60)
    reader = _verify.WorkerReader(dict(conf=bed.src.conf, keyring=bed.src.keyring, user='admin'), timeout=60)
    killing = KillingReader(reader, sig)
    try:
        r = _verify.digest_image(cli, pool, None, name, 's', 'data', reader=killing)
        again = _verify.digest_image(cli, pool, None, name, 's', 'data', reader=reader)   # a new child
    finally:
        reader.close()
    assert killing.killed and r['fallback'].startswith('librbd reader died with %s' % sig.name)
    assert r['fallback'].endswith('; read again with rbd export') and len(reader.failures) == 1
    assert 'fallback' not in again and again['digest'] == r['digest']
    # independent: the bytes of rbd export, sliced at rbd diff's extents
    image = bed.src.run('export', '--no-progress', '--pool', pool, '--image', name, '--snap', 's', '-').stdout
    h = _verify.DataHasher(len(image))
    extents = bed.src.rbd_json('diff', '--pool', pool, '--image', name, '--snap', 's')
    for e in sorted(extents, key=lambda e: e['offset']):
        h.begin(e['offset'])
        h.update(image[e['offset']:e['offset'] + e['length']])
    assert r['digest'] == h.hexdigest() and r['bytes_read'] == sum(e['length'] for e in extents) > 8 * MiB


def test_a_dead_librbd_helper_costs_one_cli_call(bed, stress_pool):
    """LibRbd's child killed between two calls: the next call is answered by the CLI, and says so."""
    _verify, _librbd, _parallel, _rbd = _imports()
    pool, items, expect = stress_pool
    image = items[1]['image']
    c = _librbd.LibRbd(conf=bed.src.conf, keyring=bed.src.keyring, user='admin', timeout=60, children=1)
    try:
        before = c.snapshots(pool, image)
        os.kill(c._idle[0].pid, signal.SIGABRT)
        time.sleep(0.5)
        after = c.snapshots(pool, image)           # (the CLI pads the day of the month with a space)
        assert [(s['id'], s['name']) for s in after] == [(s['id'], s['name']) for s in before]
        assert [s['name'] for s in before] == ['s1', 's2']
        assert len(c.fallbacks) == 1 and 'librbd helper' in c.fallbacks[0] and 'SIGABRT' in c.fallbacks[0]
        assert c.diff(pool, image, snap='s2', from_snap='s1')          # a new child
        assert len(c.fallbacks) == 1
    finally:
        c.close()


def test_the_modules_read_and_query_in_their_children_without_fallback(bed, stress_pool):
    """Through ansible (AnsiballZ): the children start from the module's payload and answer; no image
    needed the CLI, no warning."""
    pool, items, expect = stress_pool
    r = bed.src_module('rbd_extent_verify', dict(pool=pool, images=items[:6]))
    assert not r.get('warnings'), r['warnings']
    assert [(i['image'], i['digest'], 'fallback' in i) for i in r['images']] == [
        (i['image'], expect['digests'][i['image']], False) for i in items[:6]]
    names = [i['image'] for i in items[:6]]
    for state in ('present', 'absent'):
        r = bed.src_module('rbd_snapshot', dict(pool=pool, images=names, snapshot='backup-x', state=state))
        assert not r.get('warnings') and r['changed'], r.get('warnings')


def measure_cost(bed, pool, big=2048, small=200, rounds=3):
    """Seconds to read with the old in-process reader and with the reader child (the new design):
    ``big`` MiB of extents of one image, and 200 small images (64 KiB changed each, module-like: CLI
    queries, then the reads)."""
    import rbd as librbd
    import random
    _verify, _librbd, _parallel, _rbd = _imports()
    conn = dict(conf=bed.src.conf, keyring=bed.src.keyring, user='admin')
    cli = _rbd.Rbd(timeout=120, **conn)
    rng = random.Random(1)
    with bed.src.cluster.open_ioctx(pool) as io:
        if 'big' not in librbd.RBD().list(io):
            librbd.RBD().create(io, 'big', big * MiB, old_format=False)
            with librbd.Image(io, 'big') as img:
                block = rng.randbytes(4 * MiB)
                for off in range(0, big * MiB, 4 * MiB):
                    img.write(block, off)
                img.create_snap('s')
            for i in range(small):
                name = 'small-%03d' % i
                librbd.RBD().create(io, name, 64 * MiB, old_format=False)
                with librbd.Image(io, name) as img:
                    img.write(rng.randbytes(64 << 10), rng.randrange(0, 63) * MiB)
                    img.create_snap('s')
    out = collections.defaultdict(list)
    big_extents = [(0, big * MiB, True)]

    def hash_all(reader, image, extents):
        return _verify._hash_ranges(big * MiB, reader.ranges(pool, None, image, 's', extents))

    def module_like(reader, workers):
        def work(i):
            return _verify.digest_image(cli, pool, None, 'small-%03d' % i, 's', 'data', reader=reader)['digest']
        return [r for _i, r, _e in _parallel.run_all(range(small), work, workers)]

    def timed(label, fn, client):
        """fn(client) timed; the client closed inside the timing, so its children's CPU counts too."""
        cpu0, t0 = os.times(), time.monotonic()
        try:
            return fn(client)
        finally:
            client.close()
            out[label].append(time.monotonic() - t0)
            cpu1 = os.times()
            out[label + ' CPU'].append(sum(cpu1[:4]) - sum(cpu0[:4]))

    class Old:
        """The old in-process reader on its own connection, closed like the old module did."""

        def __init__(self):
            self.conn = _librbd.InProcess(timeout=120, **conn)
            self.reader = OldSyncReader(self.conn.cluster)

        def ranges(self, *args):
            return self.reader.ranges(*args)

        def close(self):
            self.conn.close()

    class Cli(_rbd.Rbd):
        def close(self):
            pass

    def queries(client):         # what rbd_snapshot asks per image, 32 threads (the role's parallel)
        def work(i):
            name = 'small-%03d' % i
            return len(client.snapshots(pool, name)), client.info(pool, name)['size'], \
                len(client.diff(pool, name, snap='s'))
        return [r for _i, r, _e in _parallel.run_all(range(small), work, 32)]

    for _r in range(rounds):
        d = [timed('2 GiB read in-process (before)', lambda c: hash_all(c, 'big', big_extents), Old()),
             timed('2 GiB read in the child (now)', lambda c: hash_all(c, 'big', big_extents),
                   _verify.WorkerReader(conn, timeout=120))]
        assert d[0] == d[1]
        d = [timed('200 small verify in-process, serial (before)', lambda c: module_like(c, 1), Old()),
             timed('200 small verify child, serial', lambda c: module_like(c, 1),
                   _verify.WorkerReader(conn, timeout=120)),
             timed('200 small verify child, 8 threads (now)', lambda c: module_like(c, 8),
                   _verify.WorkerReader(conn, timeout=120))]
        assert d[0] == d[1] == d[2]
        d = [timed('200 small queries in-process 32 thr (before)', queries, _librbd.InProcess(timeout=120, **conn)),
             timed('200 small queries 8 children (now)', queries, _librbd.LibRbd(timeout=120, children=8, **conn)),
             timed('200 small queries rbd CLI', queries, Cli(timeout=120, **conn))]
        assert d[0] == d[1] == d[2]
    for k, v in out.items():
        print('%-48s %s  median %.2f s' % (k, ' '.join('%.2f' % x for x in v), sorted(v)[len(v) // 2]), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--trial', nargs=2, metavar=('PATTERN', 'SPEC'))
    ap.add_argument('--trials', type=int, default=10)
    ap.add_argument('--images', type=int, default=24)
    ap.add_argument('--patterns', default='aio_threads,sync_threads,serial,queries,worker')
    ap.add_argument('--extra', default='{}', help='JSON merged into every spec (threads, depth, exit)')
    ap.add_argument('--keep', action='store_true', help='keep the pool (crash-stress)')
    ap.add_argument('--pool', default=None)
    ap.add_argument('--cost', action='store_true', help='measure the reader child against in-process reads')
    ap.add_argument('--json', help='append every trial (stderr included) to this file, one JSON a line')
    args = ap.parse_args(argv)
    if args.trial:
        return trial_main(*args.trial)
    sys.path.insert(0, str(HERE.parent))
    from conftest import Bed, _env_file
    bed = Bed(_env_file(os.path.join(os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'), 'env.sh')))
    pool = args.pool or 'crash-stress-%d' % os.getpid()
    fresh = pool not in bed.src.run('osd', 'pool', 'ls', tool='ceph').stdout.decode().split()
    if fresh:
        bed.src.create_pool(pool)
    if args.cost:
        items = []
    elif fresh:
        items = make_images(bed.src, pool, args.images)
    else:
        items = [dict(image=n, snapshot='s2', from_snapshot='s1' if i % 2 else None)
                 for i, n in enumerate(bed.src.images(pool))]
    try:
        if args.cost:
            return measure_cost(bed, pool)
        expect = expected_results(bed, pool, items)
        extra = json.loads(args.extra)
        results = []
        for i in range(args.trials):
            for pattern in args.patterns.split(','):
                r = run_trial(pattern, _spec(bed, pool, items, pattern, expect, **extra))
                results.append(r)
                if args.json:
                    with open(args.json, 'a') as f:
                        f.write(json.dumps(r) + '\n')
                if r['outcome'] != 'ok':
                    tail = r['stderr'].strip().splitlines()[-3:]
                    print('trial %d %s: %s %s rc=%s %.1fs %s %s' % (i, pattern, r['outcome'], r.get('signal', ''),
                          r['rc'], r['seconds'], r.get('detail', ''), tail), flush=True)
        for pattern, s in summarize(results).items():
            secs = [r['seconds'] for r in results if r['pattern'] == pattern]
            print('%-13s %s  median %.1f s' % (pattern, dict(s), sorted(secs)[len(secs) // 2]), flush=True)
    finally:
        if not args.keep:
            bed.src.remove_pool(pool)


if __name__ == '__main__':
    sys.exit(main())
