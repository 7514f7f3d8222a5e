"""Two rows of issue #13 over a fleet of unchanged images: push against pull on the same pool (``push``) and
one nightly run over 1,000 images (``k1``).

Both build their images and the initial replication in the bench process through python3-rbd, many images
at a time (``fleet_copies``, not timed): what the role's first run leaves (the same bytes and one snapshot
<prefix><stamp> on both sides), without the four rbd processes and the ssh connection per image of
baselines.initial_copies, whose 8-at-a-time bash is slow for 1,000 images on a 2-core machine.
"""

import concurrent.futures
import json
import os
import time
from typing import Dict, List, Sequence

from .analysis import failed_msg, good_or_all, median_profile, task_table, transfer_images
from .cases import alternate, yesterday_stamp
from .cluster import librbd
from .common import MiB, log, median
from .runner import Bench

# what each image holds, as cases.small_images writes it: (offset, bytes) of unique random data
FLEET_WRITES = ((0, 8192), (512 * 1024, 4096))
# images set up at once: librbd calls release the GIL and the monitor batches the snapshot commits
SETUP_THREADS = 32
PUSH_SIDES = ('pull', 'push')


def fleet_names(count: int) -> List[str]:
    return ['img-%04d' % i for i in range(count)]


def _fleet_image(io, name: str, chunks, snap: str) -> None:
    """One 1 MiB image with ``chunks`` [(offset, data)] written and then the snapshot ``snap``."""
    librbd.RBD().create(io, name, MiB)
    with librbd.Image(io, name) as img:
        for off, data in chunks:
            img.write(data, off)
        img.create_snap(snap)


def fleet_copies(b: Bench, pool: str, names: Sequence[str], dest_pools: Sequence[str], what: str) -> float:
    """Images of 1 MiB with a few KiB written in ``pool`` on the source cluster, each replicated once into every
    pool of ``dest_pools`` on the backup cluster: the same bytes and the same snapshot (the role's prefix, a UTC
    stamp a day ago) on both sides, nothing else.  SETUP_THREADS images at a time; returns its seconds."""
    stamp = yesterday_stamp()
    ios = [b.bed.src.cluster.open_ioctx(pool)] + [b.bed.dst.cluster.open_ioctx(p) for p in dest_pools]

    def one(name):
        chunks = [(off, os.urandom(n)) for off, n in FLEET_WRITES]
        for io in ios:
            _fleet_image(io, name, chunks, stamp)
    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(SETUP_THREADS) as ex:
            list(ex.map(one, names))
    finally:
        for io in ios:
            io.close()
    wall = time.monotonic() - t0
    log('%s setup: %d images, each replicated into %d pool(s), in %.1fs (python3-rbd, %d at a time; not timed)'
        % (what, len(names), len(dest_pools), wall, SETUP_THREADS))
    return wall


def run_record(r: dict) -> dict:
    """What a role run over the fleet keeps: wall, rc, the failed task, the per-task table, the transfer's
    seconds per image (median, p90, max), and what the run says it did (the set_stats summary: images,
    unchanged, failed, snapshots pruned per side; its size)."""
    totals = ((r.get('custom') or {}).get('_run') or {}).get('rbd_replicate') or {}
    per_image = [e for t in totals.values() for e in t.get('per_image') or []]
    xfer = transfer_images(r)
    return dict(wall=r['wall'], rc=r['rc'], error=failed_msg(r), tasks=task_table(r),
                transfer_results=len(xfer), transfer_image_s=_spread([x.get('seconds') or 0 for x in xfer]),
                images=len(per_image),
                unchanged=sum(1 for e in per_image if e.get('unchanged')),
                failed_images=sum(1 for e in per_image if e.get('failed')),
                pruned_source=sum(len(e.get('removed_source') or []) for e in per_image),
                pruned_dest=sum(len(e.get('removed_dest') or []) for e in per_image),
                summary_bytes=len(json.dumps(r.get('custom') or {})))


def _spread(xs: List[float]) -> dict:
    """Median, 90th percentile and maximum of ``xs`` (None each when empty)."""
    xs = sorted(xs)
    return dict(median=median(xs), p90=xs[int(0.9 * (len(xs) - 1))] if xs else None, max=xs[-1] if xs else None)


def _fmt_run(x: dict) -> str:
    return '%.1fs (%d images, %d unchanged, %d failed; pruned %d/%d; transfer s/image median %s, max %s)%s' % (
        x['wall'], x['images'], x['unchanged'], x['failed_images'], x['pruned_source'], x['pruned_dest'],
        x['transfer_image_s']['median'], x['transfer_image_s']['max'],
        ' FAILED rc=%d: %s' % (x['rc'], x['error']) if x['rc'] else '')


def _ok(x: dict, count: int) -> bool:
    """A role run that passed and carried every image of the fleet."""
    return not x['rc'] and x['images'] == count and not x['failed_images']


# A fleet run is one role run over hundreds of images: 1,000 took 114-196 s here, and a loaded machine (load
# 13) has doubled that; the default --run-timeout (300 s, sized for one-image runs) would kill it mid-row.
FLEET_RUN_TIMEOUT = 900


def fleet_timeout(b: Bench) -> int:
    """Seconds one fleet role run may take: --run-timeout, but at least FLEET_RUN_TIMEOUT."""
    return max(b.args.run_timeout, FLEET_RUN_TIMEOUT)


# -- push: push vs pull on the same unchanged pool -------------------------------------------------

def case_push(b: Bench) -> Dict[str, dict]:
    """COUNT unchanged images of 1 MiB in each of two pools, the same fleet, replicated once by the bench: per
    run a full nightly role run with ``rbd_replicate_transport: pull`` (the role's default) on one and with
    ``push`` on the other, alternating which goes first.  A pool each, not one source pool for two
    destinations: there every run's base would be older than the source's previous snapshot (the other
    transport's), the snapshot step's hints would not apply, and the transfer would ask the source again for
    every image, a cost a night with one destination does not have."""
    count = b.args.images
    names = fleet_names(count)
    b.ensure_space(2 * count * MiB, 2 * count * MiB, 'push setup')
    pools = dict((who, b.make_pool('push' + who)) for who in PUSH_SIDES)
    setup = sum(fleet_copies(b, pools[who], names, [pools[who]], 'push (%s pool)' % who) for who in PUSH_SIDES)
    runs = []
    for i in range(b.args.runs):
        rec = dict(order=alternate(i, *PUSH_SIDES))
        for who in rec['order']:
            r = b.role(pools[who], dict(rbd_replicate_transport=who), 'push-%s#%d' % (who, i),
                       timeout=fleet_timeout(b))
            rec[who] = run_record(r)
        rec['ratio'] = rec['push']['wall'] / rec['pull']['wall']
        log('push run %d/%d: pull %s; push %s: push/pull %.2f' % (
            i + 1, b.args.runs, _fmt_run(rec['pull']), _fmt_run(rec['push']), rec['ratio']))
        runs.append(rec)
    for p in pools.values():
        b.drop_pool(p)
    return {'push': push_result(runs, count, setup)}


def push_result(all_runs: List[dict], count: int, setup: float) -> dict:
    def ok(r):
        return all(_ok(r[w], count) for w in PUSH_SIDES)
    runs = good_or_all(all_runs, ok)
    res = dict(images=count, setup_s=setup, runs=all_runs, good_runs=len([r for r in all_runs if ok(r)]),
               pull_median=median([r['pull']['wall'] for r in runs]),
               push_median=median([r['push']['wall'] for r in runs]),
               ratio_median=median([r['ratio'] for r in runs]),
               failed_messages=[r[w]['error'] for r in all_runs for w in PUSH_SIDES if r[w]['rc']],
               profile=median_profile([r['push']['tasks'] for r in runs]),
               profile_pull=median_profile([r['pull']['tasks'] for r in runs]))
    res['ratio_of_medians'] = res['push_median'] / res['pull_median']
    return res


# -- k1: one nightly run over 1,000 unchanged images -----------------------------------------------

K1_VARS = dict(rbd_replicate_retention_dest=dict(last=2))


def case_k1(b: Bench) -> Dict[str, dict]:
    """--k1-images (1,000; --quick 200) unchanged images of 1 MiB, replicated once by the bench: per run a full
    nightly role run with the role's defaults (snapshot, transfer, verify data, prune both sides) but for the
    destination's retention, K1_VARS: the defaults keep every snapshot of one day on the destination (last 3,
    daily 7), so there runs 1-3 removed nothing (pruned 1000/0 at 7a69266). With last 2 on both sides, from
    the second run on each image has one snapshot to remove on each side: a night of the steady state."""
    count = b.args.k1_images
    names = fleet_names(count)
    b.ensure_space(2 * count * MiB, 2 * count * MiB, 'k1 setup')
    pool = b.make_pool('k1')
    setup = fleet_copies(b, pool, names, [pool], 'k1')
    runs = []
    for i in range(b.args.runs):
        log('k1 run %d/%d: role over %d unchanged images' % (i + 1, b.args.runs, count))
        runs.append(run_record(b.role(pool, K1_VARS, 'k1#%d' % i, timeout=fleet_timeout(b))))
        log('k1 run %d/%d: role %s; %.3f s/image; set_stats summary %d bytes' % (
            i + 1, b.args.runs, _fmt_run(runs[-1]), runs[-1]['wall'] / count, runs[-1]['summary_bytes']))
    b.drop_pool(pool)
    runs_ok = good_or_all(runs, lambda x: _ok(x, count))
    res = dict(images=count, setup_s=setup, runs=runs, good_runs=len([x for x in runs if _ok(x, count)]),
               role_median=median([x['wall'] for x in runs_ok]),
               failed_messages=[x['error'] for x in runs if x['rc']],
               summary_bytes=max(x['summary_bytes'] for x in runs),
               profile=median_profile([x['tasks'] for x in runs_ok]))
    res['per_image'] = res['role_median'] / count
    return {'k1': res}
