"""What the role is measured against: the old script's steps, the serial per-image loop, raw rbd pipes.

All run as bash from the "source host" (this machine): the rbd CLI with the source cluster's config, and
``ssh -p 2222 root@127.0.0.3`` (OpenSSH's default cipher, no ControlMaster) for the backup side.
"""

import concurrent.futures
import shlex
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .cluster import Bed, quoted
from .common import log, median

SERIAL_STEPS = ('snap', 'base', 'transfer', 'verify', 'prune')


class Shell(NamedTuple):
    """The quoted command prefixes of the baseline scripts."""
    s: str        # rbd on the source cluster
    ssh: str      # ssh to the backup host
    d: str        # rbd on the backup cluster (run there through ssh, or locally)

    @property
    def dq(self) -> str:
        """``d`` for inside a double-quoted remote command."""
        return self.d.replace('"', '\\"')


def shell(bed: Bed) -> Shell:
    return Shell(quoted(['rbd'] + bed.src.args()), quoted(bed.ssh), quoted(['rbd'] + bed.dst.args()))


def step_times(stamps: Sequence[Tuple[str, float]], digits: Optional[int] = None) -> Dict[str, float]:
    """Seconds between the ``t NAME`` stamps of a script, by the name of the stamp that ends them."""
    return dict((n1, t1 - t0 if digits is None else round(t1 - t0, digits))
                for (_n0, t0), (n1, t1) in zip(stamps, stamps[1:]))


def snap_create(sh: Shell, pool: str, image: str, snap: str) -> str:
    return '%s snap create %s/%s@%s' % (sh.s, pool, image, snap)


def export_diff(sh: Shell, pool: str, image: str, snap: str, from_snap: Optional[str] = None) -> str:
    return '%s export-diff --no-progress%s %s/%s@%s -' % (
        sh.s, ' --from-snap %s' % from_snap if from_snap else '', pool, image, snap)


def send(sh: Shell, pool: str, image: str, snap: str, dst_pool: str, from_snap: Optional[str] = None) -> str:
    """``rbd export-diff ... - | ssh 'rbd import-diff - DST_POOL/IMAGE'``: the old script's pipe."""
    return '%s | %s %s' % (export_diff(sh, pool, image, snap, from_snap), sh.ssh,
                           shlex.quote('%s import-diff --no-progress - %s/%s' % (sh.d, dst_pool, image)))


def local_pipe(sh: Shell, pool: str, snap: str, dst_image: str, from_snap: Optional[str] = None,
               path: str = '-') -> str:
    """``rbd export-diff pool/vm@snap - | rbd import-diff PATH pool/DST_IMAGE``, backup cluster, no ssh."""
    return '%s | %s import-diff --no-progress %s %s/%s' % (
        export_diff(sh, pool, 'vm', snap, from_snap), sh.d, path, pool, dst_image)


# -- p1 / p1z: the old script's steps on one image -------------------------------------------------

def old_initial(bench, pool: str, old_pool: str, snap: str) -> float:
    """The old script's first full copy of pool/vm into old_pool/vm (not timed by the cases)."""
    sh = shell(bench.bed)
    script = '%s\n%s\n' % (snap_create(sh, pool, 'vm', snap), send(sh, pool, 'vm', snap, old_pool))
    wall, rc, _st, err = bench.bash(script)
    if rc:
        raise RuntimeError('old script initial replication failed: %s' % err)
    return wall


def old_incremental(bench, pool: str, old_pool: str, prev: str, new: str) -> dict:
    """The old script's steps for one image (timed), then drop PREV on both sides (untimed)."""
    sh = shell(bench.bed)
    script = '\n'.join([
        't start',
        snap_create(sh, pool, 'vm', new),
        't snap',
        send(sh, pool, 'vm', new, old_pool, from_snap=prev),
        't transfer',
        'a=$(%s diff --from-snap %s %s/vm@%s --format json | md5sum)' % (sh.s, prev, pool, new),
        'b=$(%s %s)' % (sh.ssh, shlex.quote('%s diff --from-snap %s %s/vm@%s --format json | md5sum'
                                            % (sh.d, prev, old_pool, new))),
        't verify',
        '[ "$a" = "$b" ] || echo "EXTENTS MISMATCH" >&2',
    ])
    wall, rc, stamps, err = bench.bash(script)
    bench.bash('%s snap rm --no-progress %s/vm@%s\n%s %s' % (
        sh.s, pool, prev, sh.ssh, shlex.quote('%s snap rm --no-progress %s/vm@%s' % (sh.d, old_pool, prev))))
    return dict(wall=wall, rc=rc, steps=step_times(stamps, 3), mismatch='EXTENTS MISMATCH' in err,
                err=err[-500:] if rc else '')


# -- p2: the initial copies, and the serial per-image loop -----------------------------------------

def initial_copies(bench, jobs: List[Tuple[str, str]], stamp: str, what: str = 'p2') -> None:
    """Replicate each (pool, image) of ``jobs`` once, 8 at a time, the way the role leaves things (one
    snapshot ``stamp`` on both sides, nothing else).  Not what P2 (or hosts) measures: it is not timed."""
    sh = shell(bench.bed)

    def initial(job):
        p, n = job
        return bench.bash('%s create --size 1M %s/%s\n%s\n%s' % (
            sh.d, p, n, snap_create(sh, p, n, stamp), send(sh, p, n, stamp, p)))
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        bad = [(j, r[3]) for j, r in zip(jobs, ex.map(initial, jobs)) if r[1]]
    if bad:
        raise RuntimeError('%s initial replication failed for %d images, e.g. %s' % (what, len(bad), bad[0]))
    log('%s setup: initial replication done in %.1fs' % (what, time.monotonic() - t0))


def _serial_script(sh, pool, image, new):
    return '\n'.join([
        't start',
        snap_create(sh, pool, image, new),
        't snap',
        'BASE=$(%s %s | awk \'NR>1 {n=$2} END {print n}\')' % (
            sh.ssh, shlex.quote('%s snap ls %s/%s' % (sh.d, pool, image))),
        't base',
        '%s export-diff --no-progress --from-snap "$BASE" %s/%s@%s - | %s "%s import-diff '
        '--no-progress - %s/%s"' % (sh.s, pool, image, new, sh.ssh, sh.dq, pool, image),
        't transfer',
        'a=$(%s diff --from-snap "$BASE" %s/%s@%s --format json | md5sum)' % (sh.s, pool, image, new),
        'b=$(%s "%s diff --from-snap $BASE %s/%s@%s --format json | md5sum")' % (
            sh.ssh, sh.dq, pool, image, new),
        '[ "$a" = "$b" ] || echo "EXTENTS MISMATCH" >&2',
        't verify',
        '%s snap rm --no-progress %s/%s@"$BASE"' % (sh.s, pool, image),
        '%s "%s snap rm --no-progress %s/%s@$BASE"' % (sh.ssh, sh.dq, pool, image),
        't prune',
    ])


def serial_loop(bench, pool: str, images: Sequence[str], new: str, count: int, sample: int) -> dict:
    """The nightly steps, one image after the other, each timed: snap create; ssh snap ls for the base;
    export-diff | ssh import-diff; rbd diff | md5sum both sides; snap rm of the base both sides.
    Timed on ``images`` (the first ``sample`` of the pool) and scaled by ``count`` / ``sample``."""
    sh = shell(bench.bed)
    per = []
    steps_all = []
    for n in images:
        w, rc, stamps, err = bench.bash(_serial_script(sh, pool, n, new))
        if rc:
            log('p2 serial loop failed on %s: %s' % (n, err[-500:]))
        per.append(w)
        steps_all.append(step_times(stamps))
    return dict(old_sample=sum(per), old_per_image_median=median(per),
                old_scaled=sum(per) * count / sample,
                old_steps=dict((k, median([s.get(k) for s in steps_all])) for k in SERIAL_STEPS))


# -- ab: import-diff from stdin vs /dev/stdin --------------------------------------------------------

def ab_setup(bench, pool: str, prev: str) -> None:
    """Snapshot ``prev`` of pool/vm, copied into pool/dash and pool/devstdin on the backup cluster."""
    sh = shell(bench.bed)
    script = '%s\n' % snap_create(sh, pool, 'vm', prev)
    for n in ('dash', 'devstdin'):
        script += '%s\n' % local_pipe(sh, pool, prev, n)
    _wall, rc, _st, err = bench.bash(script)
    if rc:
        raise RuntimeError('ab setup failed: %s' % err)


def ab_snap(bench, pool: str, new: str) -> None:
    bench.bash(snap_create(shell(bench.bed), pool, 'vm', new))


def ab_import(bench, pool: str, prev: str, new: str, target: str) -> float:
    """Seconds of ``export-diff | import-diff PATH`` into pool/TARGET (dash: ``-``, devstdin: /dev/stdin)."""
    path = '-' if target == 'dash' else '/dev/stdin'
    w, rc, _st, err = bench.bash(local_pipe(shell(bench.bed), pool, new, target, from_snap=prev, path=path))
    if rc:
        log('ab %s failed: %s' % (target, err[-500:]))
    return w


# -- direct, restore: raw pipes between the two clusters -------------------------------------------

def raw_direct(bench, pool: str, prev: str, new: str, dst_pool: str, ro: Sequence[str]) -> dict:
    """``snap create`` (untimed), then the timed local pipe ``rbd export-diff --from-snap PREV pool/vm@NEW - |
    rbd import-diff - DST_POOL/vm`` (``ro``: the source-side client args, the read-only user), then drop PREV
    on both sides (untimed)."""
    sh = shell(bench.bed)
    _w, rc, _st, err = bench.bash(snap_create(sh, pool, 'vm', new))
    if rc:
        return dict(wall=None, rc=rc, err=err)
    wall, rc, _st, err = bench.bash('%s export-diff --no-progress --from-snap %s %s/vm@%s - | %s import-diff '
                                    '--no-progress - %s/vm' % (quoted(['rbd'] + list(ro)), prev, pool, new, sh.d,
                                                               dst_pool))
    bench.bash('%s snap rm --no-progress %s/vm@%s; %s snap rm --no-progress %s/vm@%s' % (
        sh.s, pool, prev, sh.d, dst_pool, prev))
    return dict(wall=wall, rc=rc, err=err[-500:])


def raw_restore(bench, pool: str, snap: str, new: str) -> dict:
    """The raw full restore the restore playbook is measured against, run on the backup host:
    ``rbd export pool/vm@SNAP - | ssh SOURCE 'rbd import - pool/NEW'`` (the source host's sshd, OpenSSH's
    default cipher)."""
    sh = shell(bench.bed)
    to_source = quoted(bench.bed.ssh[:-1] + ['root@%s' % bench.bed.env.get('SRC_HOST', '127.0.0.2')])
    wall, rc, _st, err = bench.bash('%s export --no-progress %s/vm@%s - | %s %s' % (
        sh.d, pool, snap, to_source, shlex.quote('%s import --no-progress - %s/%s' % (sh.s, pool, new))))
    return dict(wall=wall, rc=rc, err=err[-500:])
