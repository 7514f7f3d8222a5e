"""Soak test: N simulated nights of the nightly playbook on the two-cluster test bed (issue #12 item 1).

One pool (``soak-<seed>-<pid>``, created on both clusters, removed at the end unless --keep) holds a
dozen images of mixed sizes.  Every night:

1. between nights, seeded random changes on the source: unique random data and zero runs (never
   ``rbd bench``, which writes constant bytes), discards, grow, shrink, new images, clones of protected
   snapshots, deleted images, a deleted name created again (its backup is then rebuilt), a deleted base
   snapshot on either side, a foreign write on a backup image;
2. the real nightly playbook (``ansible-playbook ceph_rbd.backup.replicate``), with retention small
   enough that pruning happens every night; a night with a foreign write runs it without and then
   with ``rbd_replicate_allow_rollback`` (without it, that image must fail with "modified since its
   snapshot");
3. during a run, from a thread timed into the transfer step: a killed ``rbd import-diff``, a stopped and
   restarted backup OSD (short: the cluster is shared), or a second run against the same pool (it must
   be refused with the lock message);
4. after every run: retention is exact on both sides (the expected kept set is computed with the
   collection's own pure functions, _retention.select), holds and import marks are consistent, no
   ``*.rebuilding`` leftover, replaced copies (``*.replaced-*``) and orphaned backups are never
   deleted or changed, every failure is one the run injected and the play's failure message names it;
   after every night: every snapshot common to both sides is byte-identical (``rbd export | sha256``;
   snapshots are immutable, so digests are cached by image id and snapshot id) and every live source
   image has its newest snapshot on the backup unless its failure was injected.

The last night injects no fault: everything must have converged.  Prints a per-night table and totals,
writes the JSON result (default .build/soak/last.json), exits 1 on any mismatch, unexpected failure or
oracle violation.  Nothing is mocked: real CLI, librbd, ssh and ansible.
"""

import argparse
import datetime
import hashlib
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TESTBED = REPO / 'tests' / 'testbed' / 'testbed.sh'
COLLECTIONS = REPO / '.build' / 'collections'
_retention = _snapshots = None    # the collection's own pure functions (load_pure): the oracle uses them

try:
    import rados
    import rbd as librbd
except ImportError:  # pragma: no cover
    sys.exit('python3-rados/python3-rbd must import: run from the .venv that make builds')

KiB = 1 << 10
MiB = 1 << 20
PREFIX = 'backup-'
SRC_POLICY = {'last': 2}
DST_POLICY = {'last': 3, 'hourly': 2}
META_IMPORTING = 'ceph_rbd_backup.importing'
HOLD_PREFIX = 'ceph_rbd_backup.hold.'
DEST_HOST = 'backup'
LOCK_MSG = 'another replication run holds the lock on pool'
FOREIGN_MSG = 'was modified since its snapshot'
TRANSFER_TASK = 'Send what changed'
PLAY_TIMEOUT = 900

# name, size: a dozen images of mixed sizes (odd sizes included), one name with a space
INITIAL = [('vm-a', 4 * MiB), ('vm-b', 8 * MiB), ('vm-c', 16 * MiB), ('vm-d', 24 * MiB + 64 * KiB),
           ('vm-e', 32 * MiB), ('vm-f', 48 * MiB), ('vm-g', 64 * MiB), ('vm-h', 96 * MiB),
           ('vm-i', 1 * MiB), ('vm k', 12 * MiB), ('vm-l', 40 * MiB), ('vm-m', 5 * MiB + 12 * KiB)]
IN_NIGHT = ('kill', 'osd', 'concurrent')
SHORT = dict(del_src_base='rm-src-base', del_dst_base='rm-bak-base', purge_src='purge-src')


def load_pure(root):
    """Import _retention and _snapshots (pure, no Ansible) from the collection tree under test."""
    global _retention, _snapshots  # pylint: disable=global-statement
    sys.path.insert(0, str(Path(root) / 'plugins' / 'module_utils'))
    _retention = importlib.import_module('_retention')
    _snapshots = importlib.import_module('_snapshots')


def product_tree(ref):
    """The collection as committed at ``ref``, exported once under .build/soak/: (sha, collections path).

    A long soak on a shared working tree would otherwise run whatever half-done edits others have saved.
    """
    sha = subprocess.run(['git', 'rev-parse', '--verify', ref + '^{commit}'], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    base = REPO / '.build' / 'soak'
    tree = base / ('tree-%s' % sha[:12])
    if not (tree / 'galaxy.yml').exists():
        tmp = base / ('tree-%s.tmp' % sha[:12])
        subprocess.run(['rm', '-rf', str(tmp)], check=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(['git', 'archive', sha], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(['tar', '-x', '-C', str(tmp)], input=archive, check=True)
        tmp.rename(tree)
    coll = base / ('collections-%s' % sha[:12])
    link = coll / 'ansible_collections' / 'ceph_rbd' / 'backup'
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(tree)
    return sha, tree, coll


def log(msg):
    print('[soak %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def env_file(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith('export '):
            k, sep, v = line[len('export '):].partition('=')
            if not sep:
                continue
            env[k] = v.strip('"\'')
    return env


def prefixed(snaps):
    return [s['name'] for s in sorted(snaps, key=lambda s: s['id']) if s['name'].startswith(PREFIX)]


def timed(names):
    return [(n, _snapshots.snapshot_time(dict(name=n), PREFIX)) for n in names]


def expected_kept(names, policy, keep):
    """The kept set the prune step must leave: the collection's own pure retention over ``names``."""
    kept, _removed = _retention.select(timed(names), policy, keep)
    return [n for n in names if n in kept]


# ------------------------------------------------------------------------------------------ clusters

class Cluster:
    """One test-bed cluster through the real rbd CLI and librbd (with op timeouts: an OSD may be down)."""

    def __init__(self, name, conf, keyring):
        self.name, self.conf, self.keyring = name, conf, keyring
        self._rados = None
        self._lock = threading.Lock()

    def args(self):
        return ['--conf', self.conf, '--keyring', self.keyring, '--id', 'admin']

    def run(self, *args, tool='rbd', check=True, timeout=180):
        proc = subprocess.run([tool] + self.args() + list(args), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError('%s %s on %s failed rc=%s: %s' % (tool, ' '.join(args), self.name, proc.returncode,
                                                                 proc.stderr.decode(errors='replace')[-2000:]))
        return proc

    @property
    def cluster(self):
        with self._lock:
            if self._rados is None:
                r = rados.Rados(conffile=self.conf, conf={'keyring': self.keyring, 'rados_osd_op_timeout': '120',
                                                          'rados_mon_op_timeout': '60', 'client_mount_timeout': '60'})
                r.connect(timeout=60)
                self._rados = r
            return self._rados

    def shutdown(self):
        if self._rados is not None:
            self._rados.shutdown()
            self._rados = None

    def ioctx(self, pool):
        return self.cluster.open_ioctx(pool)

    def create_pool(self, pool):
        self.run('osd', 'pool', 'create', pool, '8', tool='ceph')
        self.run('osd', 'pool', 'application', 'enable', pool, 'rbd', tool='ceph')
        self.run('pool', 'init', pool)

    def remove_pool(self, pool):
        self.run('osd', 'pool', 'rm', pool, pool, '--yes-i-really-really-mean-it', tool='ceph', check=False)

    def osd_up_from(self):
        """The OSD's up_from epoch: it changes when the OSD restarts (ours, or another test's)."""
        proc = self.run('osd', 'dump', '--format', 'json', tool='ceph', check=False, timeout=60)
        try:
            return [o.get('up_from') for o in json.loads(proc.stdout)['osds']]
        except Exception:  # noqa: BLE001 - informative only
            return None

    def listing(self, pool):
        """Every image: id, size, snapshots (id order), image-meta.  In-process: cheap enough after every run."""
        out = {}
        with self.ioctx(pool) as io:
            for name in librbd.RBD().list(io):
                try:
                    with librbd.Image(io, name, read_only=True) as img:
                        snaps = sorted((dict(id=s['id'], name=s['name'], size=s['size']) for s in img.list_snaps()),
                                       key=lambda s: s['id'])
                        out[name] = dict(id=img.id(), size=img.size(), snaps=snaps, meta=dict(img.metadata_list()))
                except librbd.ImageNotFound:
                    continue
        return out

    def export_sha(self, pool, image, snap):
        """sha256 of ``rbd export IMAGE@SNAP -``: what the issue calls byte-identical."""
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(['rbd'] + self.args() + ['export', '--no-progress', '--pool', pool, '--image', image,
                                                             '--snap', snap, '-'],
                                    stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
            h = hashlib.sha256()
            n = 0
            for chunk in iter(lambda: proc.stdout.read(1 << 20), b''):
                h.update(chunk)
                n += len(chunk)
            rc = proc.wait(timeout=600)
            if rc != 0:
                err.seek(0)
                raise RuntimeError('rbd export %s/%s@%s on %s failed rc=%d: %s' % (
                    pool, image, snap, self.name, rc, err.read().decode(errors='replace')[-1000:]))
        return h.hexdigest(), n

    # -- changes (librbd in-process) --
    def create(self, pool, image, size):
        with self.ioctx(pool) as io:
            librbd.RBD().create(io, image, size, old_format=False)

    def write(self, pool, image, offset, data):
        with self.ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                for i in range(0, len(data), 4 * MiB):
                    img.write(data[i:i + 4 * MiB], offset + i)

    def discard(self, pool, image, offset, length):
        with self.ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                img.discard(offset, length)

    def resize(self, pool, image, size):
        with self.ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                try:
                    img.resize(size, allow_shrink=True)
                except TypeError:
                    img.resize(size)

    def snap_create(self, pool, image, snap, protect=False):
        with self.ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                img.create_snap(snap)
                if protect:
                    img.protect_snap(snap)

    def snap_remove(self, pool, image, snap):
        with self.ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                img.remove_snap(snap)

    def clone(self, pool, parent, snap, child):
        with self.ioctx(pool) as io:
            librbd.RBD().clone(io, parent, snap, io, child)

    def remove_image(self, pool, image):
        with self.ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                for s in list(img.list_snaps()):
                    if img.is_protected_snap(s['name']):
                        img.unprotect_snap(s['name'])
                    img.remove_snap(s['name'])
            librbd.RBD().remove(io, image)


# ------------------------------------------------------------------------------------------ processes

def our_rbd(pool, verb):
    """[(pid, image)] of live ``rbd ... VERB ... --pool POOL`` processes: ours by construction (unique pool)."""
    found = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % d, 'rb') as f:
                argv = [a.decode(errors='replace') for a in f.read().split(b'\0')]
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != 'rbd' or verb not in argv:
            continue
        if '--pool' in argv and argv.index('--pool') + 1 < len(argv) and argv[argv.index('--pool') + 1] == pool:
            image = argv[argv.index('--image') + 1] if '--image' in argv else None
            found.append((int(d), image))
    return found


def base_image(name):
    return name[:-len('.rebuilding')] if name and name.endswith('.rebuilding') else name


class Soak:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        if args.product_ref:
            self.commit, self.tree, self.collections = product_tree(args.product_ref)
        else:
            self.commit, self.tree, self.collections = None, REPO, COLLECTIONS
        load_pure(self.tree)
        bed_dir = os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed')
        self.env = env_file(os.path.join(bed_dir, 'env.sh'))
        self.inventory = self.env['INVENTORY']
        self.src = Cluster('source', self.env['SRC_CONF'], self.env['SRC_KEYRING'])
        self.dst = Cluster('backup', self.env['DST_CONF'], self.env['DST_KEYRING'])
        self.pool = args.pool or 'soak-%d-%d' % (self.seed, os.getpid())
        self.hold_key = HOLD_PREFIX + '%s/%s' % (DEST_HOST, self.pool)
        self.workdir = Path(args.out).resolve().parent / ('run-%s' % self.pool)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # the harness's model of the source (decided by the seed only, never by results: reproducible)
        self.images = {}          # name -> dict(size, clone_of, gold=[protected snaps], born=night)
        self.deleted = []         # names deleted on the source (their backups stay: orphans)
        self.counter = 0
        self.prev_written = set()  # images written between the previous two nights
        # oracle state
        self.digests = {}         # (side, image id, snap id) -> (sha256, bytes): snapshots are immutable
        self.orphans = {}         # dest image -> its prefixed snapshots when its source went away
        self.replaced = {}        # dest *.replaced-* image -> its prefixed snapshots when renamed aside
        self.nights = []
        self.findings = []        # every mismatch / unexpected failure / violation, with its context
        self.osd_stopped_by_us = False
        self.osd_restarts = 0

    # ----------------------------------------------------------------------------- schedule
    def schedule(self):
        """Which night gets which special event: every kind at least once when nights allow, then extras."""
        n = self.args.nights
        rng = random.Random('%d:schedule' % self.seed)
        faultable = list(range(1, n - 1))          # night 0 is the first sync, the last night is clean
        plan = dict((i, dict(fault=None, special=[])) for i in range(n))
        if not faultable:
            return plan
        order = list(IN_NIGHT)
        rng.shuffle(order)
        nights = faultable[:]
        rng.shuffle(nights)
        for kind, night in zip(order, nights):
            plan[night]['fault'] = kind
        osd_budget = max(1, n // 8)
        osd_used = sum(1 for p in plan.values() if p['fault'] == 'osd')
        for night in faultable:
            if plan[night]['fault'] is None and rng.random() < 0.4:
                kind = rng.choice(['kill', 'kill', 'concurrent', 'osd'])
                if kind == 'osd':
                    if osd_used >= osd_budget:
                        kind = 'kill'
                    else:
                        osd_used += 1
                plan[night]['fault'] = kind
        specials = ['foreign', 'del_src_base', 'del_dst_base', 'delete', 'clone', 'new', 'grow', 'shrink']
        for kind in specials:
            # a base deletion means most on images with two common snapshots or more (else it is a rebuild)
            late = [i for i in faultable if i >= 2]
            where = late if kind in ('del_src_base', 'del_dst_base') and late else faultable
            plan[rng.choice(where)]['special'].append(kind)
        # a deleted name created again: after a night that deleted an image (rebuild of its backup)
        dels = [i for i in faultable if 'delete' in plan[i]['special']]
        later = [i for i in faultable if dels and i > dels[0]]
        if later:
            plan[rng.choice(later)]['special'].append('reuse')
        rates = dict(foreign=0.08, del_src_base=0.12, del_dst_base=0.08, delete=0.12, clone=0.12, new=0.15,
                     grow=0.25, shrink=0.2, reuse=0.08, purge_src=0.04)
        for night in faultable:
            for kind, p in sorted(rates.items()):
                if rng.random() < p and kind not in plan[night]['special']:
                    plan[night]['special'].append(kind)
        return plan

    # ----------------------------------------------------------------------------- changes
    def data(self, rng, n):
        """Unique random bytes with a zero run inside now and then (import-diff re-sparsifies zeros)."""
        if n >= 64 * KiB and rng.random() < 0.3:
            z = rng.randrange(4 * KiB, n // 2)
            at = rng.randrange(0, n - z)
            return rng.randbytes(at) + b'\0' * z + rng.randbytes(n - at - z)
        return rng.randbytes(n)

    def write_some(self, rng, name, total=None):
        img = self.images[name]
        size = img['size']
        writes = []
        count = rng.randint(1, 3)
        while len(writes) < count:
            length = min(size, total or rng.choice([4 * KiB, 64 * KiB, 512 * KiB, 1 * MiB, 3 * MiB + 123, 2 * MiB]))
            offset = rng.randrange(0, size - length + 1)
            if rng.random() < 0.7:
                offset -= offset % 4096
            self.src.write(self.pool, name, offset, self.data(rng, length))
            writes.append(length)
            if total:
                break
        return sum(writes)

    def fresh_name(self, kind):
        self.counter += 1
        return '%s-%02d' % (kind, self.counter)

    def candidates(self, night, exclude=(), settled=True, plain=False, deletable=False):
        out = []
        for name, img in sorted(self.images.items()):
            if name in exclude:
                continue
            if settled and img['born'] >= night:
                continue
            if plain and img['clone_of']:
                continue
            if deletable and img['gold']:
                continue
            out.append(name)
        return out

    def mutate(self, night, plan, rng):
        """Between nights: seeded changes on the source (and the backup).  Returns (actions, context)."""
        actions = []
        ctx = dict(foreign=None, del_dst_base=None, del_src_base=None, touched={}, carrier=None, expect_rebuild=set())

        def touch(name, what):
            ctx['touched'].setdefault(name, []).append(what)

        busy = set()     # images a destructive action already took tonight
        for name in rng.sample(sorted(self.images), min(len(self.images), rng.randint(2, 5))):
            self.write_some(rng, name)
            touch(name, 'write')
        actions.append('w%d' % sum(1 for v in ctx['touched'].values() if 'write' in v))
        zs = rng.sample(sorted(self.images), min(len(self.images), rng.randint(1, 2)))
        for name in zs:
            size = self.images[name]['size']
            length = min(size, rng.choice([64 * KiB, 1 * MiB, 4 * MiB]))
            offset = rng.randrange(0, size - length + 1)
            offset -= offset % 4096
            if rng.random() < 0.7:
                self.src.write(self.pool, name, offset, b'\0' * length)
                touch(name, 'zeros')
            else:
                self.src.discard(self.pool, name, offset, length)
                touch(name, 'discard')
        actions.append('z%d' % len(zs))
        for kind in plan['special']:
            if kind == 'grow':
                c = self.candidates(night, busy, settled=False)
                if c:
                    name = rng.choice(c)
                    new = self.images[name]['size'] + rng.choice([1 * MiB, 4 * MiB, 16 * MiB, 5 * MiB + 8 * KiB])
                    self.src.resize(self.pool, name, new)
                    self.images[name]['size'] = new
                    if rng.random() < 0.6:
                        self.src.write(self.pool, name, new - 64 * KiB, self.data(rng, 64 * KiB))
                    touch(name, 'grow')
                    actions.append('grow(%s)' % name)
            elif kind == 'shrink':
                c = [n for n in self.candidates(night, busy, settled=False) if self.images[n]['size'] > 2 * MiB]
                if c:
                    name = rng.choice(c)
                    old = self.images[name]['size']
                    new = max(1 * MiB, old - rng.choice([1 * MiB, old // 3, 4 * MiB + 4 * KiB]))
                    new -= new % 4096
                    self.src.resize(self.pool, name, new)
                    self.images[name]['size'] = new
                    touch(name, 'shrink')
                    actions.append('shrink(%s)' % name)
            elif kind == 'new':
                name = self.fresh_name('new')
                size = rng.choice([2 * MiB, 8 * MiB, 20 * MiB + 4 * KiB, 36 * MiB])
                self.src.create(self.pool, name, size)
                self.images[name] = dict(size=size, clone_of=None, gold=[], born=night)
                self.write_some(rng, name)
                touch(name, 'new')
                busy.add(name)
                actions.append('new(%s)' % name)
            elif kind == 'clone':
                c = self.candidates(night, busy, settled=False, plain=True)
                if c:
                    parent = rng.choice(c)
                    gold = 'gold-%02d' % night
                    self.src.snap_create(self.pool, parent, gold, protect=True)
                    self.images[parent]['gold'].append(gold)
                    name = self.fresh_name('clone')
                    self.src.clone(self.pool, parent, gold, name)
                    self.images[name] = dict(size=self.images[parent]['size'], clone_of=(parent, gold), gold=[],
                                             born=night)
                    self.write_some(rng, name)
                    touch(name, 'clone of %s@%s' % (parent, gold))
                    busy.add(name)
                    actions.append('clone(%s->%s)' % (parent, name))
            elif kind == 'delete':
                c = self.candidates(night, busy, settled=False, deletable=True)
                if len(self.images) > 6 and c:
                    name = rng.choice(c)
                    self.src.remove_image(self.pool, name)
                    del self.images[name]
                    self.deleted.append(name)
                    touch(name, 'deleted')
                    busy.add(name)
                    actions.append('rm(%s)' % name)
            elif kind == 'reuse':
                c = [n for n in self.deleted if n not in self.images and n not in busy]
                if c:
                    name = rng.choice(sorted(c))
                    size = rng.choice([4 * MiB, 16 * MiB])
                    self.src.create(self.pool, name, size)
                    self.images[name] = dict(size=size, clone_of=None, gold=[], born=night)
                    self.deleted.remove(name)
                    self.write_some(rng, name)
                    touch(name, 'recreated')
                    busy.add(name)
                    ctx['expect_rebuild'].add(name)
                    actions.append('reuse(%s)' % name)
            elif kind in ('del_src_base', 'del_dst_base', 'purge_src'):
                # images with two common snapshots or more (deleting the newest leaves an older common one),
                # written last night (so the deleted snapshot's data differs from the older one's)
                c = self.candidates(night, busy)
                sl, dl = self.src.listing(self.pool), self.dst.listing(self.pool)

                def common(n):
                    theirs = prefixed(dl[n]['snaps']) if n in dl else []
                    return [x for x in prefixed(sl.get(n, {}).get('snaps', [])) if x in theirs]
                good = [n for n in c if len(common(n)) >= 2]
                c = [n for n in good if n in self.prev_written] or good or c
                if c:
                    name = rng.choice(c)
                    busy.add(name)
                    side = self.dst if kind == 'del_dst_base' else self.src
                    snaps = prefixed(side.listing(self.pool).get(name, {}).get('snaps', []))
                    if not snaps:
                        actions.append('%s(%s: none, skipped)' % (SHORT[kind], name))
                        continue
                    gone = snaps if kind == 'purge_src' else snaps[-1:]
                    for s in gone:
                        side.snap_remove(self.pool, name, s)
                    touch(name, '%s %s' % (kind, ','.join(gone)))
                    ctx[kind] = name
                    if kind == 'purge_src':
                        ctx['expect_rebuild'].add(name)
                    actions.append('%s(%s)' % (SHORT[kind], name))
            elif kind == 'foreign':
                c = self.candidates(night, busy)
                if c:
                    name = rng.choice(c)
                    dst = self.dst.listing(self.pool).get(name)
                    if not dst or not prefixed(dst['snaps']):
                        actions.append('foreign(%s: no backup, skipped)' % name)
                        continue
                    busy.add(name)
                    length = min(dst['size'], 64 * KiB)
                    offset = rng.randrange(0, dst['size'] - length + 1)
                    self.dst.write(self.pool, name, offset, rng.randbytes(length))
                    touch(name, 'foreign write on the backup')
                    ctx['foreign'] = name
                    actions.append('foreign(%s)' % name)
        if plan['fault']:
            # a carrier for the in-night fault: a change large enough that its stream lasts (with bwlimit)
            c = [n for n in self.candidates(night, busy, settled=False) if self.images[n]['size'] >= 24 * MiB]
            if not c:
                c = self.candidates(night, busy, settled=False)
            name = rng.choice(c)
            size = self.images[name]['size']
            if size < 24 * MiB:
                self.src.resize(self.pool, name, 32 * MiB)
                self.images[name]['size'] = size = 32 * MiB
            length = 16 * MiB
            offset = rng.randrange(0, size - length + 1)
            offset -= offset % 4096
            self.src.write(self.pool, name, offset, self.data(rng, length))
            touch(name, 'carrier 16 MiB')
            ctx['carrier'] = name
        self.prev_written = set(n for n, what in ctx['touched'].items() if n in self.images and any(
            w in ('write', 'zeros', 'discard', 'new', 'recreated', 'carrier 16 MiB', 'shrink', 'grow') or
            w.startswith('clone of') for w in what))
        return actions, ctx

    def initial(self, rng):
        actions = []
        for name, size in INITIAL:
            self.src.create(self.pool, name, size)
            self.images[name] = dict(size=size, clone_of=None, gold=[], born=0)
            total = 0
            while total < min(size // 4, 6 * MiB):
                length = min(size, rng.choice([64 * KiB, 1 * MiB, 2 * MiB]))
                offset = rng.randrange(0, size - length + 1)
                self.src.write(self.pool, name, offset - offset % 4096, self.data(rng, length))
                total += length
        actions.append('create %d images' % len(INITIAL))
        self.prev_written = set(self.images)
        return actions, dict(foreign=None, touched={}, carrier=None, expect_rebuild=set())

    # ----------------------------------------------------------------------------- runs
    def ansible_env(self, progress, record):
        env = dict(os.environ)
        env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
        env.update(ANSIBLE_COLLECTIONS_PATH=str(self.collections), ANSIBLE_DEPRECATION_WARNINGS='False',
                   ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_SYSTEM_WARNINGS='False', ANSIBLE_PYTHON_INTERPRETER='/usr/bin/python3',
                   ANSIBLE_CALLBACK_PLUGINS=str(HERE / 'callback_plugins'), ANSIBLE_CALLBACKS_ENABLED='soak_record',
                   SOAK_PROGRESS=progress, SOAK_RECORD=record)
        return env

    def role_vars(self, **extra):
        out = dict(rbd_replicate_pools=[dict(pool=self.pool)], rbd_replicate_retention_source=SRC_POLICY,
                   rbd_replicate_retention_dest=DST_POLICY)
        out.update(extra)
        return out

    def start_playbook(self, tag, extra):
        progress = str(self.workdir / ('%s.progress' % tag))
        record = str(self.workdir / ('%s.json' % tag))
        logpath = self.workdir / ('%s.log' % tag)
        for p in (progress, record):
            if os.path.exists(p):
                os.unlink(p)
        cmd = ['ansible-playbook', '-i', self.inventory, 'ceph_rbd.backup.replicate', '-e', json.dumps(extra)]
        logf = open(logpath, 'w')
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                env=self.ansible_env(progress, record), start_new_session=True)
        return dict(proc=proc, logf=logf, log=logpath, record=record, progress=progress, t0=time.monotonic(), tag=tag)

    def finish_playbook(self, h, timeout=PLAY_TIMEOUT):
        proc = h['proc']
        killed = False
        try:
            proc.wait(timeout=max(1, timeout - (time.monotonic() - h['t0'])))
        except subprocess.TimeoutExpired:
            killed = True
            log('%s: no end after %ds: killing it and our rbd processes' % (h['tag'], timeout))
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            for verb in ('import-diff', 'export-diff', 'export', 'diff', 'snap'):
                for pid, _img in our_rbd(self.pool, verb):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            proc.wait()
        h['logf'].close()
        seconds = time.monotonic() - h['t0']
        rec = {}
        if os.path.exists(h['record']):
            with open(h['record']) as f:
                rec = json.load(f)
        text = Path(h['log']).read_text(errors='replace')
        return dict(rc=proc.returncode, seconds=round(seconds, 1), killed=killed, record=rec, text=text)

    def wait_for_task(self, progress, name, stop, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            try:
                if name in Path(progress).read_text():
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def wait_for_import(self, carrier, stop, timeout=300):
        """Pids of our pool's import-diff: the carrier's if it shows up, else any."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            procs = our_rbd(self.pool, 'import-diff')
            mine = [p for p in procs if base_image(p[1]) == carrier]
            if mine:
                return mine
            if procs and time.monotonic() > deadline - timeout + 20:
                return procs
            time.sleep(0.05)
        return []

    def fault_thread(self, kind, h, carrier, rng, stop, out):
        """Timed into the transfer step of the run ``h``; records what it did in ``out``."""
        # import-diff applies a record (up to an object, 4 MiB) once it has read all of it: at 2 MiB/s a kill
        # after 2.5 s or more lands after some writes (the next run must then roll the partial import back)
        delay = round(rng.uniform(2.5, 5.5), 2)
        down = round(rng.uniform(2.0, 5.0), 1)
        try:
            out.update(kind=kind, landed=False)
            if not self.wait_for_task(h['progress'], TRANSFER_TASK, stop):
                out['note'] = 'the run ended before its transfer step'
                return
            if kind == 'concurrent':
                t0 = time.monotonic()
                second = self.start_playbook(h['tag'] + '-second', self.role_vars())
                res = self.finish_playbook(second, timeout=300)
                msgs = ' | '.join(f['msg'] for f in res['record'].get('failed', []))
                out.update(second_rc=res['rc'], second_seconds=round(time.monotonic() - t0, 1),
                           second_msg=msgs[:600], second_progress=second['progress'],
                           refused=res['rc'] != 0 and (LOCK_MSG + ' ' + self.pool) in (msgs + res['text']))
                out['landed'] = True
                return
            procs = self.wait_for_import(carrier, stop)
            if not procs:
                out['note'] = 'no import-diff of the pool was seen during the transfer'
                return
            time.sleep(delay)
            if kind == 'kill':
                victims = [p for p in our_rbd(self.pool, 'import-diff') if p[0] in set(x[0] for x in procs)]
                for pid, _img in victims:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                out.update(delay=delay, images=sorted(set(base_image(i) for _p, i in victims)),
                           raw_images=sorted(set(i for _p, i in victims)), landed=bool(victims))
                if not victims:
                    out['note'] = 'the import-diff ended before the kill'
            elif kind == 'osd':
                t0 = time.monotonic()
                self.osd_stopped_by_us = True
                try:
                    subprocess.run(['bash', str(TESTBED), 'osd-stop', 'backup'], check=True, timeout=60,
                                   capture_output=True)
                    out['landed'] = True
                    time.sleep(down)
                finally:
                    subprocess.run(['bash', str(TESTBED), 'osd-start', 'backup'], check=True, timeout=300,
                                   capture_output=True)
                    self.osd_stopped_by_us = False
                    self.osd_restarts += 1
                out.update(delay=delay, outage_seconds=round(time.monotonic() - t0, 1))
        except Exception as e:  # noqa: BLE001 - a harness problem: reported, never swallowed
            out['error'] = 'fault thread: %s' % traceback.format_exc()[-1500:]
            log('FAULT THREAD ERROR: %s' % e)

    def per_image(self, rec):
        custom = rec.get('custom') or {}
        run = custom.get('_run') or {}
        stats = (run.get('rbd_replicate') or {}).get('source') or {}
        return dict((e['image'], e) for e in stats.get('per_image') or [])

    def state(self):
        return dict(src=self.src.listing(self.pool), dst=self.dst.listing(self.pool))

    def one_run(self, night, idx, extra, fault, ctx, nrec, rng):
        """One playbook run with an optional in-night fault; per-run checks.  Returns the run record."""
        tag = 'night-%02d-run-%d' % (night, idx)
        pre = self.state()
        up_before = (self.src.osd_up_from(), self.dst.osd_up_from())
        h = self.start_playbook(tag, extra)
        stop = threading.Event()
        fault_out = {}
        th = None
        if fault:
            th = threading.Thread(target=self.fault_thread, args=(fault, h, ctx.get('carrier'), rng, stop, fault_out),
                                  daemon=True)
            th.start()
        res = self.finish_playbook(h)
        stop.set()
        if th:
            th.join(timeout=400)
        post = self.state()
        up_after = (self.src.osd_up_from(), self.dst.osd_up_from())
        external_restart = False
        if up_before != up_after and not (fault == 'osd' and fault_out.get('landed')
                                          and up_before[0] == up_after[0]):
            external_restart = True
        run = dict(tag=tag, extra=dict((k, v) for k, v in extra.items() if k not in ('rbd_replicate_pools',
                                                                                     'rbd_replicate_retention_source',
                                                                                     'rbd_replicate_retention_dest')),
                   rc=res['rc'], seconds=res['seconds'], killed=res['killed'], fault=fault_out or None,
                   external_osd_restart=external_restart, failed=[], expected_failed=[], unexpected=[],
                   violations=[], actions={}, errors={})
        per = self.per_image(res['record'])
        run['actions'] = dict((i, e.get('action')) for i, e in per.items())
        run['recovered'] = sorted(i for i, e in per.items() if e.get('recovered'))
        run['rolled_back'] = sorted(i for i, e in per.items() if e.get('rolled_back'))
        run['unchanged'] = sorted(i for i, e in per.items() if e.get('unchanged'))
        run['marked_before'] = sorted(i for i, d in pre['dst'].items() if META_IMPORTING in d['meta'])
        self.check_run(night, run, pre, post, per, res, extra, fault_out, ctx, nrec)
        return run, post

    # ----------------------------------------------------------------------------- oracle
    def finding(self, night, run, kind, image, detail, ctx):
        f = dict(night=night, seed=self.night_seed(night), run=run['tag'] if run else None, kind=kind, image=image,
                 detail=detail, harness_actions_on_image=(ctx or {}).get('touched', {}).get(image))
        self.findings.append(f)
        log('!!! %s night %d %s %s: %s' % (
            kind.upper(), night, run['tag'] if run else '', image or '', str(detail)[:1500]))
        return f

    def check_run(self, night, run, pre, post, per, res, extra, fault_out, ctx, nrec):
        rec = res['record']
        fail_msgs = [f for f in rec.get('failed', []) if not f.get('ignored')]
        final_msg = ' | '.join(f['msg'] for f in fail_msgs)
        allow_rollback = bool(extra.get('rbd_replicate_allow_rollback'))
        osd_fault = bool(fault_out and fault_out.get('kind') == 'osd' and fault_out.get('landed'))
        killed = set(fault_out.get('images') or []) if fault_out and fault_out.get('kind') == 'kill' else set()
        expect = {}
        if ctx.get('foreign') and not allow_rollback:
            expect[ctx['foreign']] = [FOREIGN_MSG]
        for img in killed:
            expect.setdefault(img, []).append('import-diff')
        if ctx.get('del_dst_base') and not allow_rollback and self.args.expect_dest_base_refusal:
            expect.setdefault(ctx['del_dst_base'], []).append(FOREIGN_MSG)
        if res['killed']:
            run['unexpected'].append(self.finding(night, run, 'unexpected', None, 'the run hung and was killed after '
                                                  '%ds' % PLAY_TIMEOUT, ctx))
        if not per:
            run['unexpected'].append(self.finding(
                night, run, 'unexpected', None, 'the play published no per-image summary (rc=%s): %s' % (
                    res['rc'], final_msg[:2000] or res['text'][-2000:]), ctx))
        # failures: each one injected tonight, each named by the play's failure message
        for img, e in sorted(per.items()):
            if not e.get('failed'):
                continue
            text = ' | '.join(e.get('errors') or [])
            run['failed'].append(img)
            run['errors'][img] = text[:3000]
            label = '%s/%s' % (self.pool, img)
            why = None
            if img in expect and any(s in text for s in expect[img]):
                why = 'kill' if FOREIGN_MSG not in text else 'foreign' if img == ctx.get('foreign') else 'dest-base'
            elif osd_fault:
                why = 'osd'
            elif run['external_osd_restart']:
                why = 'external-osd'
            if why and label not in final_msg:
                why = None
                text = 'the play failure message does not name it: %s || image errors: %s' % (final_msg[:800], text)
            if why:
                run['expected_failed'].append(dict(image=img, cause=why, message=text[:600]))
            elif FOREIGN_MSG in text and img == ctx.get('del_dst_base'):
                # README (Failure handling): "base snapshot deleted on either side: the next-newest common
                # snapshot is used; nothing to do". Deleting the backup's newest snapshot leaves the head
                # ahead of the next-newest, which the transfer takes for a foreign write.
                run['unexpected'].append(self.finding(
                    night, run, 'unexpected', img, 'PRODUCT: the base snapshot deleted on the backup, the next run '
                    'refuses the image instead of using the next-newest common snapshot: ' + text[:3000], ctx))
            else:
                run['unexpected'].append(self.finding(night, run, 'unexpected', img, text[:3000], ctx))
        if ctx.get('foreign') and not allow_rollback and ctx['foreign'] in per and not per[ctx['foreign']].get('failed'):
            run['unexpected'].append(self.finding(
                night, run, 'unexpected', ctx['foreign'],
                'a foreign write on the backup was not refused without allow_rollback: %s' % per[ctx['foreign']], ctx))
        if ctx.get('foreign') and allow_rollback and ctx['foreign'] in per:
            e = per[ctx['foreign']]
            if not e.get('failed') and not e.get('rolled_back'):
                run['violations'].append(self.finding(
                    night, run, 'violation', ctx['foreign'], 'allow_rollback run did not report rolled_back: %s' % e,
                    ctx))
        if res['rc'] != 0 and per and not run['failed']:
            run['unexpected'].append(self.finding(night, run, 'unexpected', None,
                                                  'rc=%s with no failed image: %s' % (res['rc'], final_msg[:2000]), ctx))
        if res['rc'] == 0 and run['failed']:
            run['violations'].append(self.finding(night, run, 'violation', None,
                                                  'rc=0 although images failed: %s' % run['failed'], ctx))
        if fault_out and fault_out.get('kind') == 'concurrent':
            if not fault_out.get('landed'):
                pass
            elif not fault_out.get('refused') and self.passed_lock_after(fault_out.get('second_progress'),
                                                                         rec.get('end')):
                fault_out['timing_miss'] = True
                fault_out['note'] = 'the second run reached the lock after the first ended (timing, not a fault)'
            elif not fault_out.get('refused'):
                run['unexpected'].append(self.finding(
                    night, run, 'unexpected', None, 'a second run against the same pool was not refused with the '
                    'lock message: rc=%s %s' % (fault_out.get('second_rc'), fault_out.get('second_msg')), ctx))
        if fault_out and fault_out.get('error'):
            run['unexpected'].append(self.finding(night, run, 'harness', None, fault_out['error'], ctx))
        if run['external_osd_restart']:
            log('NOTE: an OSD restarted during %s and not by this soak (another test?): failures tonight may be '
                'environmental' % run['tag'])
        self.check_state(night, run, pre, post, per, ctx)

    @staticmethod
    def passed_lock_after(progress, first_end):
        """Did the second run get past its lock task only after the first run had ended?"""
        if not progress or not first_end or not os.path.exists(progress):
            return False
        lines = [ln.split(' ', 1) for ln in Path(progress).read_text().splitlines() if ' ' in ln]
        for i, (_t, name) in enumerate(lines):
            if name.startswith('Take the replication lock on') and i + 1 < len(lines):
                return float(lines[i + 1][0]) > float(first_end)
        return False

    def check_state(self, night, run, pre, post, per, ctx):
        v = run['violations']

        def bad(image, detail):
            v.append(self.finding(night, run, 'violation', image, detail, ctx))

        src_names = set(post['src'])
        new_names = set()
        for img, s in post['src'].items():
            before = set(prefixed(pre['src'].get(img, {}).get('snaps', [])))
            new_names |= set(prefixed(s['snaps'])) - before
        if len(new_names) > 1 and not ((run.get('fault') or {}).get('timing_miss')):
            bad(None, 'more than one new snapshot name in one run (a second run got through?): %s' % sorted(new_names))
        new = sorted(new_names)[-1] if new_names else None
        for img in sorted(src_names if per else ()):     # no summary at all: reported once, by check_run
            e = per.get(img)
            if e is None:
                bad(img, 'live source image missing from the run summary')
                continue
            ps = prefixed(pre['src'].get(img, {}).get('snaps', []))
            qs = prefixed(post['src'][img]['snaps'])
            pd_img = pre['dst'].get(img)
            pd = prefixed(pd_img['snaps']) if pd_img else []
            qd_img = post['dst'].get(img)
            qd = prefixed(qd_img['snaps']) if qd_img else []
            snap = e.get('snapshot') or new
            if not e.get('failed'):
                if snap not in qs or snap not in qd:
                    bad(img, 'succeeded but its new snapshot %s is not on both sides (source %s, backup %s)'
                        % (snap, qs, qd))
                    continue
                holds = sorted(set(val for k, val in pre['src'].get(img, {}).get('meta', {}).items()
                                   if k.startswith(HOLD_PREFIX) and k != self.hold_key))
                want_s = expected_kept([n for n in ps if n != snap] + [snap], SRC_POLICY, [snap] + holds)
                if qs != want_s:
                    bad(img, 'source retention: kept %s, expected %s (before %s + %s, policy %s)'
                        % (qs, want_s, ps, snap, SRC_POLICY))
                action = e.get('action')
                base_d = [] if action in ('initial', 'rebuild') else [n for n in pd if n != snap]
                want_d = expected_kept(base_d + [snap], DST_POLICY, [snap])
                if qd != want_d:
                    bad(img, 'backup retention: kept %s, expected %s (before %s + %s, action %s, policy %s)'
                        % (qd, want_d, pd, snap, action, DST_POLICY))
                hold = post['src'][img]['meta'].get(self.hold_key)
                if hold != snap:
                    bad(img, 'hold %s = %r, expected the newest common snapshot %s' % (self.hold_key, hold, snap))
                mark = qd_img['meta'].get(META_IMPORTING)
                if mark is not None:
                    bad(img, 'import mark %s=%r left on a backup image that succeeded' % (META_IMPORTING, mark))
                if (img + '.rebuilding') in post['dst']:
                    bad(img, 'leftover %s.rebuilding after a successful run' % img)
                if img in ctx.get('expect_rebuild', ()) and action not in ('rebuild', 'up_to_date') and \
                        run['tag'].endswith('run-1'):
                    bad(img, 'expected a rebuild (no common snapshot), got action %s' % action)
                if action == 'rebuild':
                    aside = e.get('replaced_image')
                    if not aside or aside not in post['dst']:
                        bad(img, 'rebuild reported replaced image %r, which is not on the backup' % aside)
                    else:
                        got = prefixed(post['dst'][aside]['snaps'])
                        if got != pd:
                            bad(img, 'replaced copy %s holds %s, the old backup held %s' % (aside, got, pd))
                        self.replaced[aside] = got
                    self.orphans.pop(img, None)
            else:
                extra_s = set(qs) - set(ps) - {snap}
                extra_d = set(qd) - set(pd) - {snap}
                if extra_s or extra_d:
                    bad(img, 'failed, yet snapshots appeared: source %s, backup %s' % (sorted(extra_s), sorted(extra_d)))
                common_pre = [n for n in ps if n in pd]
                if common_pre and (common_pre[-1] not in qs or common_pre[-1] not in qd):
                    bad(img, 'failed and lost its newest common snapshot %s (source %s, backup %s)'
                        % (common_pre[-1], qs, qd))
        # orphaned backups: kept, untouched, reported
        for img, d in sorted(pre['dst'].items()):
            if img in pre['src'] or '.replaced-' in img or img.endswith('.rebuilding'):
                continue
            self.orphans.setdefault(img, prefixed(d['snaps']))
        for img, snaps in sorted(self.orphans.items()):
            if img in post['src']:
                continue
            if img not in post['dst']:
                bad(img, 'the backup of a deleted source image was deleted')
            elif prefixed(post['dst'][img]['snaps']) != snaps:
                bad(img, 'the backup of a deleted source image changed: %s -> %s'
                    % (snaps, prefixed(post['dst'][img]['snaps'])))
            if per and (per.get(img) or {}).get('action') != 'orphaned':
                bad(img, 'a backup without source not reported orphaned: %s' % per.get(img))
        # replaced copies: never deleted, never pruned
        for aside, snaps in sorted(self.replaced.items()):
            if aside not in post['dst']:
                bad(aside, 'a replaced copy was deleted')
            elif prefixed(post['dst'][aside]['snaps']) != snaps:
                bad(aside, 'a replaced copy changed: %s -> %s' % (snaps, prefixed(post['dst'][aside]['snaps'])))
        for name in post['dst']:
            if '.replaced-' in name and name not in self.replaced:
                bad(name, 'a replaced copy appeared without a rebuild in the summary')
            if name.endswith('.rebuilding'):
                owner = base_image(name)
                if not (per.get(owner) or {}).get('failed'):
                    bad(name, 'leftover %s (its image did not fail in this run)' % name)

    def oracle(self, night, last_run, post, ctx):
        """Night end: every common snapshot byte-identical; every live image's newest snapshot on the backup."""
        mismatches, compared, hashed = [], 0, 0
        jobs = []
        for img in sorted(post['src']):
            s = post['src'][img]
            d = post['dst'].get(img)
            src_snaps = dict((x['name'], x) for x in s['snaps'] if x['name'].startswith(PREFIX))
            newest = prefixed(s['snaps'])[-1:] if s['snaps'] else []
            on_backup = d is not None and newest and newest[0] in [x['name'] for x in d['snaps']]
            if newest and not on_backup:
                failed = [f for f in last_run['expected_failed'] if f['image'] == img]
                already = [f for f in last_run['unexpected'] if f['image'] == img]
                if not failed and not already:
                    last_run['violations'].append(self.finding(
                        night, last_run, 'violation', img, 'newest source snapshot %s is not on the backup and its '
                        'failure was not one injected tonight' % newest[0], ctx))
            if d is None:
                continue
            for x in sorted(d['snaps'], key=lambda x: x['id']):
                if x['name'] not in src_snaps:
                    continue
                y = src_snaps[x['name']]
                jobs.append((img, x['name'], ('s', s['id'], y['id']), y['size'], ('d', d['id'], x['id']), x['size']))

        def digest(key, cluster, img, snap):
            if key not in self.digests:
                self.digests[key] = cluster.export_sha(self.pool, img, snap)
                return self.digests[key], 1
            return self.digests[key], 0

        with ThreadPoolExecutor(self.args.hash_threads) as ex:
            futs = []
            for img, snap, ks, ss, kd, sd in jobs:
                futs.append((img, snap, ss, sd, ex.submit(digest, ks, self.src, img, snap),
                             ex.submit(digest, kd, self.dst, img, snap)))
            for img, snap, ss, sd, fs, fd in futs:
                (hs, ns), n1 = fs.result()
                (hd, nd), n2 = fd.result()
                compared += 1
                hashed += n1 + n2
                if ss != sd or hs != hd:
                    mismatches.append(self.finding(night, last_run, 'mismatch', img, dict(
                        snapshot=snap, source_size=ss, backup_size=sd, source_sha256=hs, backup_sha256=hd,
                        source_bytes=ns, backup_bytes=nd), ctx))
        return mismatches, compared, hashed

    # ----------------------------------------------------------------------------- nights
    def night_seed(self, night):
        return self.seed * 1000 + night

    def run_night(self, night, plan):
        t0 = time.monotonic()
        rng = random.Random(self.night_seed(night))
        nrec = dict(night=night, seed=self.night_seed(night), plan=plan, runs=[])
        if night == 0:
            actions, ctx = self.initial(rng)
        else:
            actions, ctx = self.mutate(night, plan, rng)
        nrec['actions'] = actions
        nrec['touched'] = ctx['touched']
        fault = plan['fault']
        extra = self.role_vars()
        if fault:
            extra['rbd_replicate_bwlimit'] = self.args.bwlimit
        if fault == 'osd':
            extra['rbd_replicate_timeout'] = 30
        runs = []
        run, post = self.one_run(night, 1, extra, fault, ctx, nrec, rng)
        runs.append(run)
        refused = [i for i, text in run['errors'].items() if FOREIGN_MSG in text]
        if ctx.get('foreign') or refused:
            # the foreign write was refused: the operator inspects it and reruns with allow_rollback
            extra2 = self.role_vars(rbd_replicate_allow_rollback=True)
            run2, post = self.one_run(night, 2, extra2, None, ctx, nrec, rng)
            runs.append(run2)
        nrec['runs'] = runs
        last = runs[-1]
        mismatches, compared, hashed = self.oracle(night, last, post, ctx)
        faults = []
        for r in runs:
            fo = r.get('fault') or {}
            if fo.get('kind'):
                desc = fo['kind']
                if fo['kind'] == 'kill':
                    desc += '(%s)' % ','.join(fo.get('images') or []) if fo.get('landed') else '(missed)'
                elif fo['kind'] == 'osd':
                    desc += '(%ss)' % fo.get('outage_seconds') if fo.get('landed') else '(missed)'
                elif fo['kind'] == 'concurrent':
                    desc = 'lock(%s)' % ('refused' if fo.get('refused') else 'missed' if not fo.get('landed') or
                                         fo.get('timing_miss') else 'NOT REFUSED')
                faults.append(desc)
            for f in r['expected_failed']:
                if f['cause'] == 'foreign':
                    faults.append('foreign(%s refused)' % f['image'])
                elif f['cause'] == 'dest-base':
                    faults.append('rm-bak-base(%s refused)' % f['image'])
        if ctx.get('foreign') and not any('foreign(' in f for f in faults):
            faults.append('foreign(%s)' % ctx['foreign'])
        nrec.update(images=len(post['src']), backups=len(post['dst']), compared=compared, hashed=hashed,
                    faults=faults, unexpected=sum(len(r['unexpected']) for r in runs),
                    violations=sum(len(r['violations']) for r in runs), mismatches=len(mismatches),
                    expected_failures=sum(len(r['expected_failed']) for r in runs),
                    seconds=round(time.monotonic() - t0, 1), runs=runs, rollback_run=len(runs) > 1)
        return nrec

    def main(self):
        if self.commit:
            commit, dirty = self.commit, ''
        else:
            commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                                    check=False).stdout.strip()
            dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', 'plugins', 'roles',
                                    'playbooks'], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
        plan = self.schedule()
        log('pool %s, %d nights, seed %d, collection %s at commit %s%s' % (
            self.pool, self.args.nights, self.seed, self.tree, commit[:12],
            ' + uncommitted changes in plugins/roles/playbooks' if dirty else ''))
        log('retention: source %s, backup %s; in-night faults at nights %s' % (
            SRC_POLICY, DST_POLICY, dict((i, p['fault']) for i, p in plan.items() if p['fault'])))
        self.src.create_pool(self.pool)
        self.dst.create_pool(self.pool)
        t0 = time.monotonic()
        error = None
        try:
            for night in range(self.args.nights):
                rec = self.run_night(night, plan[night])
                self.nights.append(rec)
                print(self.row(rec), flush=True)
                self.write_json(commit, dirty, started, t0, None)
                if self.args.stop_on_failure and (rec['unexpected'] or rec['mismatches'] or rec['violations']):
                    log('stopping at the first failure (--stop-on-failure)')
                    break
        except KeyboardInterrupt:
            error = 'interrupted'
            log('interrupted: cleaning up (a playbook still running ends by itself)')
        except Exception:  # noqa: BLE001 - the harness itself broke: say so, keep the result
            error = traceback.format_exc()
            log('HARNESS ERROR:\n%s' % error)
        finally:
            if self.osd_stopped_by_us:
                subprocess.run(['bash', str(TESTBED), 'osd-start', 'backup'], timeout=300, check=False)
        wall = time.monotonic() - t0
        totals = self.write_json(commit, dirty, started, t0, error)
        print()
        print(self.table())
        print()
        print('totals: nights %d, images %d, snapshots compared %d (%d exports hashed), faults injected %d, '
              'expected failures %d, unexpected failures %d, violations %d, mismatches %d, wall %.0f s'
              % (totals['nights'], totals['images'], totals['snapshots_compared'], totals['exports_hashed'],
                 totals['faults_injected'], totals['expected_failures'], totals['unexpected_failures'],
                 totals['violations'], totals['mismatches'], wall))
        if self.findings:
            print('\nFINDINGS (see %s):' % self.args.out)
            for f in self.findings:
                print('  night %s seed %s %s %s %s: %s' % (
                    f['night'], f['seed'], f['run'], f['kind'], f['image'], str(f['detail'])[:400]))
        if not self.args.keep:
            self.src.remove_pool(self.pool)
            self.dst.remove_pool(self.pool)
        else:
            log('pools %s kept on both clusters (--keep)' % self.pool)
        self.src.shutdown()
        self.dst.shutdown()
        ok = not error and not totals['unexpected_failures'] and not totals['mismatches'] and not totals['violations']
        print('SOAK %s' % ('PASSED' if ok else 'FAILED'))
        return 0 if ok else 1

    def totals(self):
        n = self.nights
        return dict(nights=len(n), images=max([r['images'] for r in n] or [0]),
                    images_ever=len(INITIAL) + self.counter,
                    snapshots_compared=sum(r['compared'] for r in n), exports_hashed=sum(r['hashed'] for r in n),
                    faults_injected=sum(len(r['faults']) for r in n),
                    expected_failures=sum(r['expected_failures'] for r in n),
                    unexpected_failures=sum(r['unexpected'] for r in n), violations=sum(r['violations'] for r in n),
                    mismatches=sum(r['mismatches'] for r in n), seconds=round(sum(r['seconds'] for r in n), 1))

    def write_json(self, commit, dirty, started, t0, error):
        totals = self.totals()
        doc = dict(commit=commit, product_tree_dirty=bool(dirty), product_tree=str(self.tree), started=started, seed=self.seed,
                   nights_requested=self.args.nights, pool=self.pool,
                   retention=dict(source=SRC_POLICY, dest=DST_POLICY), bwlimit_on_fault_nights=self.args.bwlimit,
                   wall_seconds=round(time.monotonic() - t0, 1), totals=totals, nights=self.nights,
                   findings=self.findings, harness_error=error, logs=str(self.workdir))
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix('.tmp')
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        tmp.replace(out)
        return totals

    HEAD = '%5s %7s  %-64s %6s %5s  %-34s %5s %5s %5s %6s' % (
        'night', 'seed', 'actions injected', 'images', 'snaps', 'faults', 'unexp', 'viol', 'mism', 'secs')

    def row(self, r):
        actions = textwrap.wrap(' '.join(r['actions']), 64) or ['-']
        faults = textwrap.wrap(' '.join(r['faults'] + (['+rollback run'] if r['rollback_run'] else [])) or '-', 34)
        lines = ['%5d %7d  %-64s %6d %5d  %-34s %5d %5d %5d %6.0f' % (
            r['night'], r['seed'], actions[0], r['images'], r['compared'], faults[0], r['unexpected'], r['violations'],
            r['mismatches'], r['seconds'])]
        for i in range(1, max(len(actions), len(faults))):
            lines.append('%5s %7s  %-64s %6s %5s  %-34s' % (
                '', '', actions[i] if i < len(actions) else '', '', '', faults[i] if i < len(faults) else ''))
        return '\n'.join(line.rstrip() for line in lines)

    def table(self):
        return '\n'.join([self.HEAD] + [self.row(r) for r in self.nights])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--nights', type=int, default=int(os.environ.get('SOAK_NIGHTS') or 30),
                   help='simulated nights (env SOAK_NIGHTS, default 30; the CI variant is 5)')
    p.add_argument('--seed', type=int, default=int(os.environ.get('SOAK_SEED') or 1),
                   help='seed of every random choice and every byte written (env SOAK_SEED, default 1)')
    p.add_argument('--out', default=str(REPO / '.build' / 'soak' / 'last.json'), help='JSON result file')
    p.add_argument('--pool', help='pool name on both clusters (default soak-<seed>-<pid>); must not exist')
    p.add_argument('--bwlimit', default='2M', help='rbd_replicate_bwlimit on nights with an in-night fault, so that '
                   'the carrier image\'s 16 MiB stream lasts long enough to be hit (default 2M)')
    p.add_argument('--hash-threads', type=int, default=3, help='rbd export | sha256 at once (default 3)')
    p.add_argument('--expect-dest-base-refusal', action='store_true',
                   help='count "modified since its snapshot" after a base snapshot deleted on the backup as expected '
                   '(default: unexpected, README promises the next-newest common snapshot is used)')
    p.add_argument('--product-ref', help='run the collection as committed at this git ref (exported under '
                   '.build/soak/), not the working tree, e.g. HEAD while others edit the tree')
    p.add_argument('--keep', action='store_true', help='keep the pools at the end (to investigate)')
    p.add_argument('--stop-on-failure', action='store_true', help='stop after the first night with a failure')
    args = p.parse_args(argv)
    if args.nights < 1:
        p.error('--nights must be at least 1')
    return Soak(args).main()


if __name__ == '__main__':
    sys.exit(main())
