"""The first sync of many small images (``first``, issue #13); push and 1,000 images are in bench/fleet.py.

It creates its images through python3-rbd in the bench process (not timed) and measures the role side by
side with its baseline in the same runs, alternating which goes first.
"""

import os
import shlex
from typing import Dict, List

from . import baselines
from .analysis import failed_msg, good_or_all, median_profile, task_table, transfer_images
from .cases import alternate, yesterday_stamp
from .cluster import librbd
from .common import MiB, log, median
from .runner import Bench


# -- first: a first sync of many small images --------------------------------------------------------

def full_images(b: Bench, pool: str, names: List[str]) -> None:
    """Images of 1 MiB holding 960 KiB of unique random data and a 64 KiB hole at the end (never timed)."""
    with b.bed.src.cluster.open_ioctx(pool) as io:
        for n in names:
            librbd.RBD().create(io, n, MiB)
            with librbd.Image(io, n) as img:
                img.write(os.urandom(MiB - 64 * 1024), 0)


def _first_loop_script(sh, pool, image, snap):
    """The old script's first copy of one image: snapshot, create it on the backup side, the full
    export-diff | ssh import-diff, and its verify (rbd diff | md5sum on both sides)."""
    return '\n'.join([
        't start',
        baselines.snap_create(sh, pool, image, snap),
        't snap',
        '%s %s' % (sh.ssh, shlex.quote('%s create --size 1M %s/%s' % (sh.d, pool, image))),
        baselines.send(sh, pool, image, snap, pool),
        't transfer',
        'a=$(%s diff %s/%s@%s --format json | md5sum)' % (sh.s, pool, image, snap),
        'b=$(%s %s)' % (sh.ssh, shlex.quote('%s diff %s/%s@%s --format json | md5sum' % (sh.d, pool, image, snap))),
        '[ "$a" = "$b" ] || echo "EXTENTS MISMATCH" >&2',
        't verify',
    ])


def first_loop(b: Bench, pool: str, names: List[str], count: int) -> dict:
    """The serial per-image loop of first copies over ``names`` (a sample), scaled to ``count`` images."""
    sh = baselines.shell(b.bed)
    snap = yesterday_stamp()
    per, steps, failed = [], [], 0
    for n in names:
        w, rc, stamps, err = b.bash(_first_loop_script(sh, pool, n, snap))
        if rc or 'EXTENTS MISMATCH' in err:
            failed += 1
            log('first: serial loop failed on %s: %s' % (n, err[-500:]))
        per.append(w)
        steps.append(baselines.step_times(stamps))
    return dict(loop_sample=sum(per), loop_per_image=median(per), loop=sum(per) * count / len(names),
                loop_failed=failed,
                loop_steps=dict((k, median([s.get(k) for s in steps])) for k in ('snap', 'transfer', 'verify')))


def case_first(b: Bench) -> Dict[str, dict]:
    """COUNT new images of 1 MiB (960 KiB of data each) in a new pool: the role's first nightly run (every
    image a first sync, verify and prune as configured by default) vs the serial loop of the old script's first
    copies, timed on SAMPLE images of another pool and scaled to COUNT.  Fresh pools every run."""
    count, sample = b.args.images, b.args.sample
    names = ['img-%03d' % i for i in range(count)]
    runs = []
    for i in range(b.args.runs):
        b.ensure_space(2 * count * MiB, 2 * count * MiB, 'first run %d' % (i + 1))
        pool, loop_pool = b.make_pool('first%d' % i), b.make_pool('firstloop%d' % i)
        log('first run %d/%d: creating %d + %d images of 1 MiB with 960 KiB of data (not timed)'
            % (i + 1, b.args.runs, count, sample))
        full_images(b, pool, names)
        full_images(b, loop_pool, names[:sample])
        rec = dict(order=alternate(i, 'role', 'loop'))
        for who in rec['order']:
            if who == 'role':
                r = b.role(pool, {}, 'first#%d' % i)
                xf = transfer_images(r)
                rec.update(role=r['wall'], role_rc=r['rc'], role_error=failed_msg(r), role_tasks=task_table(r),
                           role_images=len(xf), role_initial=sum(1 for x in xf if x.get('action') == 'initial'))
            else:
                rec.update(first_loop(b, loop_pool, names[:sample], count))
        rec['speedup'] = rec['loop'] / rec['role']
        log('first run %d: role %.1fs for %d images (%d first syncs); serial loop %.1fs for %d -> %.0fs scaled: %.1fx'
            % (i + 1, rec['role'], count, rec['role_initial'], rec['loop_sample'], sample, rec['loop'],
               rec['speedup']))
        runs.append(rec)
        b.drop_pool(pool)
        b.drop_pool(loop_pool)

    def ok(r):
        return not r['role_rc'] and not r['loop_failed'] and r['role_initial'] == count
    good = good_or_all(runs, ok)
    res = dict(images=count, sample=sample, runs=runs, good_runs=len([r for r in runs if ok(r)]),
               role_median=median([r['role'] for r in good]), loop_median=median([r['loop'] for r in good]),
               loop_per_image_median=median([r['loop_per_image'] for r in good]),
               profile=median_profile([r['role_tasks'] for r in good]))
    res['speedup_of_medians'] = res['loop_median'] / res['role_median']
    return {'first': res}
