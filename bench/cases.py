"""The cases: each measures the role and its baseline in the same runs and returns {result key: result}.

p1/p1z (throughput), p3 (verify), p4 (module memory), ovh (fixed cost), ab (import-diff from stdin),
p2 (scale) and hosts (one vs two source and backup hosts); the prof case (after p2) is in bench/profile.py.
bench/README.md says what each measures.
"""

import datetime
import os
import random
import time
from typing import Dict, List, Optional, Tuple

from . import baselines
from .analysis import (PER_IMAGE_MODULES, child_peaks_of, failed_msg, fmt_peaks, good_or_all, max_peaks,
                       median_profile, module_wall, peaks_of, task_table, timeline, transfer_images)
from .cluster import librbd, quoted
from .common import MiB, T_START, NoSpace, human, log, median
from .data import write_fresh
from .runner import Bench

P1_VARS = dict(rbd_replicate_verify='extents', rbd_replicate_retention_dest=dict(last=1))
P3_VARIANTS = [('none', dict(rbd_replicate_verify='none')),
               ('stream', dict(rbd_replicate_verify='data', rbd_replicate_verify_source='stream')),
               ('read', dict(rbd_replicate_verify='data', rbd_replicate_verify_source='read'))]


def alternate(i: int, first: str, second: str) -> Tuple[str, str]:
    """Which side goes first in run i: they take turns."""
    return (first, second) if i % 2 == 0 else (second, first)


def _medians(runs, *keys):
    return dict(('%s_median' % k, median([r[k] for r in runs])) for k in keys)


# -- the p1 image (p1, p1z, p3, p4) ------------------------------------------------------------------

def p1_setup(b: Bench, size: int, tag: str = 'p1') -> dict:
    """One source image (pool P, image vm) sent by both pipelines: the role to P on the backup
    cluster, the old script (its own snapshots old-NNNN) to image vm of pool Pold on the backup
    cluster.  Both read the same changed extents; the source is written once per run."""
    if b.p1_ready and b.p1_ready['size'] == size:
        return b.p1_ready
    b.ensure_space(3 * size, 3 * size, 'p1 (snapshots keep up to 3 versions of the image per side)')
    pool = b.make_pool(tag)
    old_pool = b.make_pool(tag + 'old', clusters=(b.bed.dst,))
    b.bed.src.create(pool, 'vm', size)
    b.bed.dst.create(old_pool, 'vm', size)
    b.bed.src.write(pool, 'vm', 0, os.urandom(4 * MiB))
    log('p1 setup: initial replication of a %s image with 4 MiB written (role, old script)' % human(size))
    init_role = b.role(pool, P1_VARS, 'p1-initial')
    if init_role['rc']:
        raise RuntimeError('p1: the initial role run failed: %s' % failed_msg(init_role))
    snap = 'old-0000'
    wall = baselines.old_initial(b, pool, old_pool, snap)
    b.p1_ready = dict(size=size, pool=pool, old_pool=old_pool, old_snap=snap, seq=0,
                      initial=dict(role_wall=init_role['wall'], old_wall=wall))
    return b.p1_ready


def p1_teardown(b: Bench) -> None:
    """Drop the p1 image's pools: frees their space at once (removed snapshots are trimmed slowly)."""
    if b.p1_ready:
        b.drop_pool(b.p1_ready['pool'])
        b.drop_pool(b.p1_ready['old_pool'])
        b.p1_ready = None


def _write_p1(b, st, size, what, kind='random', desc='data'):
    """Fresh data on the p1 image (never timed)."""
    log('%s: writing %s of fresh %s (not timed)' % (what, human(size), desc))
    write_fresh(b.bed.src, [(st['pool'], 'vm')], size, kind)


# -- p1, p1z ---------------------------------------------------------------------------------------

def case_p1(b: Bench, key: str, kind: str, compression: Optional[str]) -> Dict[str, dict]:
    """Role (verify extents) vs the old script's steps on SIZE of fresh changes of one image."""
    size = b.args.size
    st = p1_setup(b, size, key)
    runs = []
    extra = dict(P1_VARS)
    if compression:
        extra['rbd_replicate_compression'] = compression
    for i in range(b.args.runs):
        try:
            b.ensure_space(size, 2 * size, '%s run %d' % (key, i + 1))
        except NoSpace as e:
            log('%s: stopping after %d runs: %s' % (key, len(runs), e))
            b.notes.append('%s: %d of %d runs: %s' % (key.upper(), len(runs), b.args.runs, e))
            break
        _write_p1(b, st, size, '%s run %d/%d' % (key, i + 1, b.args.runs), kind, '%s data' % kind)
        st['seq'] += 1
        rec = _p1_run(b, st, extra, '%s#%d' % (key, i), alternate(i, 'role', 'old'))
        log('%s run %d: role %.1fs (its transfer %.1fs), old script %.1fs (its transfer %.1fs): role/old %.2f'
            % (key, i + 1, rec['role'], rec['role_transfer_s'] or -1, rec['old'],
               rec['old_steps'].get('transfer', -1), rec['ratio']))
        runs.append(rec)
    if not runs:
        return {}
    res = _p1_result(st, runs, size, kind, compression)
    if key == 'p1z':
        res['link'] = b.args.link
    res['ratio_of_medians'] = res['role_median'] / res['old_median']
    res['speedup_of_medians'] = res['old_median'] / res['role_median']
    res['transfer_only_ratio'] = (res['role_transfer_median'] / res['old_transfer_median']
                                  if res['role_transfer_median'] and res['old_transfer_median'] else None)
    return {key: res}


def _p1_run(b, st, extra, label, order):
    rec = dict(order=order)
    for who in order:
        if who == 'role':
            rec.update(_p1_role(b.role(st['pool'], extra, label)))
        else:
            new = 'old-%04d' % st['seq']
            o = baselines.old_incremental(b, st['pool'], st['old_pool'], st['old_snap'], new)
            st['old_snap'] = new
            rec.update(old=o['wall'], old_rc=o['rc'], old_steps=o['steps'], old_extents_mismatch=o['mismatch'])
    rec['ratio'] = rec['role'] / rec['old']
    return rec


def _p1_role(r):
    """What a p1 run keeps of its role run."""
    xf = transfer_images(r)
    x = xf[0] if xf else {}
    when = timeline(r)
    return dict(role=r['wall'], role_rc=r['rc'], role_tasks=task_table(r), role_error=failed_msg(r),
                role_transfer_s=x.get('seconds'), role_stream_s=x.get('stream_seconds'),
                role_bytes=x.get('bytes'), role_data_bytes=x.get('data_bytes'),
                role_snapshot=x.get('snapshot'), role_base=x.get('base'),
                role_peak_hwm=peaks_of(r['procs']), role_procs=when['procs'], role_task_times=when['tasks'])


def _p1_result(st, all_runs, size, kind, compression):
    def ok(r):
        return not r['role_rc'] and not r['old_rc']
    runs = good_or_all(all_runs, ok)
    return dict(size=size, kind=kind, compression=compression or 'none', runs=all_runs,
                good_runs=len([r for r in all_runs if ok(r)]),
                initial=st['initial'],
                role_median=median([r['role'] for r in runs]), old_median=median([r['old'] for r in runs]),
                role_transfer_median=median([r['role_transfer_s'] for r in runs]),
                role_stream_median=median([r['role_stream_s'] for r in runs]),
                old_transfer_median=median([r['old_steps'].get('transfer') for r in runs]),
                old_verify_median=median([r['old_steps'].get('verify') for r in runs]),
                role_extents_verify_median=median([module_wall(r['role_tasks'], 'rbd_extent_verify')
                                                   for r in runs]),
                ratio_median=median([r['ratio'] for r in runs]),
                failed_role_runs=sum(1 for r in all_runs if r['role_rc']),
                failed_old_runs=sum(1 for r in all_runs if r['old_rc']),
                extents_mismatch_old_runs=sum(1 for r in all_runs if r.get('old_extents_mismatch')),
                role_peak_hwm=max_peaks([r['role_peak_hwm'] for r in all_runs]),
                profile=median_profile([r['role_tasks'] for r in runs]))


# -- p3, p4 ----------------------------------------------------------------------------------------

def case_p3(b: Bench) -> Dict[str, dict]:
    """P3: role runs with verify none, data against the stream digest (the role's default) and data
    against a second read of the source, in rotating order, each on freshly written data of the P1
    size.  The added time of a verify variant is its role median minus the verify-none median."""
    size = b.args.size
    st = p1_setup(b, size, 'p3')    # pools of its own: a pool re-created under p1's name was not found
    runs = []
    for i in range(b.args.runs):
        rec = {}
        k = i % len(P3_VARIANTS)
        for name, extra in P3_VARIANTS[k:] + P3_VARIANTS[:k]:
            b.ensure_space(size, 2 * size, 'p3 run %d' % (i + 1))
            _write_p1(b, st, size, 'p3 run %d/%d (%s)' % (i + 1, b.args.runs, name))
            rec[name] = _p3_record(b.role(st['pool'], dict(extra, rbd_replicate_retention_dest=dict(last=1)),
                                          'p3-%s#%d' % (name, i)))
        log('p3 run %d: role %s' % (i + 1, ', '.join(
            '%s %.1fs (transfer %.1fs, verify tasks %.1fs)' % (n, rec[n]['wall'], rec[n]['transfer_s'] or -1,
                                                               rec[n]['verify_wall'])
            for n, _e in P3_VARIANTS)))
        runs.append(rec)
    res = _p3_result(size, runs)
    allx = [x for r in runs for x in r.values()]
    b.p4_large = dict(size=size, transfer=max_peaks([x['peak_hwm'] for x in allx]),
                      verify=max_peaks([x['peak_hwm'] for x in allx]),
                      children=max_peaks([x['child_peak_hwm'] for x in allx]))
    return {'p3': res}


def _p3_record(r):
    xf = transfer_images(r)
    tt = task_table(r)
    return dict(wall=r['wall'], rc=r['rc'], error=failed_msg(r),
                transfer_s=(xf[0] if xf else {}).get('seconds'),
                verify_wall=module_wall(tt, 'rbd_extent_verify'),
                peak_hwm=peaks_of(r['procs']), child_peak_hwm=child_peaks_of(r['procs']),
                tasks=tt)


def _p3_result(size, runs):
    def good(name):
        return good_or_all([r[name] for r in runs], lambda x: not x['rc'])
    none_wall = median([x['wall'] for x in good('none')])
    xfer = median([x['transfer_s'] for x in good('none')])
    res = dict(size=size, runs=runs, failed_runs=sum(1 for r in runs for x in r.values() if x['rc']),
               role_none_median=none_wall, transfer_seconds_median=xfer,
               profile=median_profile([x['tasks'] for x in good('stream')]))
    for name in ('stream', 'read'):
        wall = median([x['wall'] for x in good(name)])
        res[name] = dict(role_median=wall, added=wall - none_wall,
                         ratio=(wall - none_wall) / xfer if xfer else None,
                         transfer_median=median([x['transfer_s'] for x in good(name)]),
                         verify_tasks_wall_median=median([x['verify_wall'] for x in good(name)]))
    return res


def case_p4_small(b: Bench) -> Dict[str, dict]:
    """Role runs (verify data) on a small change: the module peaks to compare with the large runs."""
    size = b.args.mem_small
    st = p1_setup(b, b.args.size)
    runs = []
    for i in range(min(b.args.runs, 2)):
        b.ensure_space(size, size, 'p4 run')
        log('p4 %s run %d: writing %s (not timed)' % (human(size), i + 1, human(size)))
        write_fresh(b.bed.src, [(st['pool'], 'vm')], size, 'random')
        r = b.role(st['pool'], dict(rbd_replicate_verify='data', rbd_replicate_retention_dest=dict(last=1)),
                   'p4#%d' % i)
        runs.append(dict(rc=r['rc'], wall=r['wall'], peak_hwm=peaks_of(r['procs']),
                         child_peak_hwm=child_peaks_of(r['procs']), error=failed_msg(r)))
        log('p4 %s run %d: peaks %s' % (human(size), i + 1, fmt_peaks(runs[-1]['peak_hwm'])))
    small = max_peaks([r['peak_hwm'] for r in runs])
    res = dict(sizes=[size], peak_hwm={str(size): small},
               child_peak_hwm={str(size): max_peaks([r['child_peak_hwm'] for r in runs])}, runs_small=runs)
    large = b.p4_large
    if large:
        res['sizes'].append(large['size'])
        res['peak_hwm'][str(large['size'])] = dict(
            rbd_diff_transfer=large['transfer'].get('rbd_diff_transfer'),
            rbd_extent_verify=large['verify'].get('rbd_extent_verify'))
        res['child_peak_hwm'][str(large['size'])] = large['children']
        res['large_from'] = 'the p3 role runs'
    return {'p4': res}


# -- ovh, ab ---------------------------------------------------------------------------------------

def case_ovh(b: Bench) -> Dict[str, dict]:
    """The fixed cost of one role run: one 1 MiB image, nothing changed, verify data; ansible's ssh
    pipelining off vs on (-e ansible_pipelining=false/true, over whatever the inventory says)."""
    pool = b.make_pool('ovh')
    b.bed.src.create(pool, 'vm', MiB)
    b.bed.src.write(pool, 'vm', 0, os.urandom(8192))
    init = b.role(pool, {}, 'ovh-initial')
    if init['rc']:
        raise RuntimeError('ovh: initial role run failed')
    runs = []
    for i in range(b.args.runs):
        rec = {}
        for who in alternate(i, 'default', 'pipelining'):
            r = b.role(pool, dict(ansible_pipelining=(who == 'pipelining')), 'ovh-%s#%d' % (who, i))
            rec[who] = r['wall']
            rec[who + '_rc'] = r['rc']
            rec[who + '_tasks'] = task_table(r)
        rec['ratio'] = rec['pipelining'] / rec['default']
        log('ovh run %d: role on 1 unchanged image: pipelining off %.1fs, on %.1fs' % (
            i + 1, rec['default'], rec['pipelining']))
        runs.append(rec)
    res = dict(runs=runs, **_medians(runs, 'default', 'pipelining', 'ratio'),
               profile=median_profile([r['pipelining_tasks'] for r in runs]),
               profile_no_pipelining=median_profile([r['default_tasks'] for r in runs]))
    b.drop_pool(pool)
    return {'ovh': res}


def case_ab(b: Bench) -> Dict[str, dict]:
    """``rbd import-diff -`` vs ``rbd import-diff /dev/stdin``, the same diff, a direct local pipe."""
    size = b.args.ab_size
    b.ensure_space(size, 2 * size, 'ab setup')
    pool = b.make_pool('ab')
    src, dst = b.bed.src, b.bed.dst
    src.create(pool, 'vm', size)
    for n in ('dash', 'devstdin'):
        dst.create(pool, n, size)
    write_fresh(src, [(pool, 'vm')], size, 'random')
    prev = 'ab-0'
    baselines.ab_setup(b, pool, prev)
    runs = []
    for i in range(b.args.runs):
        b.ensure_space(size, 2 * size, 'ab run')
        log('ab run %d/%d: writing %s (not timed)' % (i + 1, b.args.runs, human(size)))
        write_fresh(src, [(pool, 'vm')], size, 'random')
        new = 'ab-%d' % (i + 1)
        baselines.ab_snap(b, pool, new)
        rec = {}
        for n in alternate(i, 'dash', 'devstdin'):
            rec[n] = baselines.ab_import(b, pool, prev, new, n)
        rec['ratio'] = rec['devstdin'] / rec['dash']
        log('ab run %d: import-diff -: %.2fs, /dev/stdin: %.2fs (%.2fx)' % (
            i + 1, rec['dash'], rec['devstdin'], rec['ratio']))
        runs.append(rec)
        prev = new
    res = dict(size=size, runs=runs, **_medians(runs, 'dash', 'devstdin', 'ratio'))
    b.drop_pool(pool)
    return {'ab': res}


# -- p2 --------------------------------------------------------------------------------------------

def case_p2(b: Bench) -> Dict[str, dict]:
    """COUNT unchanged images: a full nightly role run vs the serial per-image loop (timed on SAMPLE
    images, scaled).  Leaves its pools in b.p2_ready for the prof case; p2_teardown drops them."""
    count, sample = b.args.images, b.args.sample
    pool, old_pool = b.make_pool('p2'), b.make_pool('p2old')
    names = ['img-%03d' % i for i in range(count)]
    b.p2_ready = dict(pool=pool, old_pool=old_pool, names=names)
    log('p2 setup: creating %d + %d images of 1 MiB with a few KiB written' % (count, sample))
    small_images(b, ((pool, names), (old_pool, names[:sample])))
    init_role = _p2_initial(b, pool, old_pool, names, names[:sample])
    runs, budget_note = _p2_runs(b, pool, old_pool, names[:sample])
    return {'p2': _p2_result(runs, count, sample, init_role, budget_note)}


def p2_teardown(b: Bench) -> None:
    if b.p2_ready:
        b.drop_pool(b.p2_ready['pool'])
        b.drop_pool(b.p2_ready['old_pool'])
        b.p2_ready = None


def small_images(b: Bench, pools_names) -> None:
    """Images of 1 MiB with a few KiB written (p2, hosts): for each (pool, names) of ``pools_names``."""
    for p, ns in pools_names:
        with b.bed.src.cluster.open_ioctx(p) as io:
            for n in ns:
                librbd.RBD().create(io, n, MiB)
                with librbd.Image(io, n) as img:
                    img.write(os.urandom(8192), 0)
                    img.write(os.urandom(4096), 512 * 1024)


def _p2_initial(b, pool, old_pool, names, snames):
    """The initial replication is not what P2 measures: the bench does it itself, 8 images at a time,
    the way the role leaves things (a snapshot <prefix><UTC stamp> on both sides, nothing else);
    --p2-initial role makes the role do it (and reports its time)."""
    stamp = yesterday_stamp()
    jobs = [(pool, n) for n in names] + [(old_pool, n) for n in snames]
    init_role = None
    if b.args.p2_initial == 'role':
        jobs = [(old_pool, n) for n in snames]
        log('p2 setup: initial replication of %d images (role)' % len(names))
        r = b.role(pool, {}, 'p2-initial')
        init_role = r['wall']
        log('p2 setup: initial role run %.1fs rc=%d' % (r['wall'], r['rc']))
    log('p2 setup: initial replication of %d images by the bench (8 at a time)' % len(jobs))
    baselines.initial_copies(b, jobs, stamp, 'p2')
    return init_role


def yesterday_stamp() -> str:
    """The name of an initial snapshot made by the bench: the role's prefix and a UTC stamp a day ago."""
    return 'backup-' + (datetime.datetime.utcnow() - datetime.timedelta(days=1)).strftime('%Y%m%dT%H%M%SZ')


def _p2_runs(b, pool, old_pool, snames):
    count, sample = b.args.images, b.args.sample
    runs = []
    for i in range(b.args.runs):
        budget_note = _over_budget(b, runs)
        if budget_note:
            log('p2: ' + budget_note)
            return runs, budget_note
        rec = dict(order=alternate(i, 'role', 'old'))
        for who in rec['order']:
            if who == 'role':
                log('p2 run %d/%d: role over %d images' % (i + 1, b.args.runs, count))
                r = b.role(pool, {}, 'p2#%d' % i)
                rec.update(role=r['wall'], role_rc=r['rc'], role_tasks=task_table(r),
                           role_images=len(transfer_images(r)), role_error=failed_msg(r))
            else:
                log('p2 run %d/%d: serial loop over %d sample images' % (i + 1, b.args.runs, sample))
                new = 'backup-%s-%d' % (datetime.datetime.utcnow().strftime('%Y%m%dT%H%M%SZ'), i)
                rec.update(baselines.serial_loop(b, old_pool, snames, new, count, sample))
        rec['speedup'] = rec['old_scaled'] / rec['role']
        log('p2 run %d: role %.1fs for %d images; serial %.1fs for %d images -> %.0fs scaled to %d: %.1fx'
            % (i + 1, rec['role'], count, rec['old_sample'], sample, rec['old_scaled'], count, rec['speedup']))
        runs.append(rec)
    return runs, None


def _over_budget(b, runs):
    """Why p2 stops here (its next run would end after --budget minutes), or None."""
    if not (runs and b.args.budget):
        return None
    last = runs[-1]['role'] + runs[-1]['old_sample'] + 5
    left = b.args.budget * 60 - (time.monotonic() - T_START)
    if last <= left:
        return None
    return ('%d of %d runs: one more (~%.0fs) would exceed the %g min time budget '
            '(--budget 0 for all runs)' % (len(runs), b.args.runs, last, b.args.budget))


def _p2_result(all_runs: List[dict], count, sample, init_role, budget_note):
    runs = good_or_all(all_runs, lambda r: not r['role_rc'])
    res = dict(images=count, sample=sample, runs=all_runs, initial_role_wall=init_role, budget_note=budget_note,
               role_median=median([r['role'] for r in runs]),
               old_scaled_median=median([r['old_scaled'] for r in runs]),
               old_per_image_median=median([r['old_per_image_median'] for r in runs]),
               failed_role_runs=sum(1 for r in all_runs if r['role_rc']),
               failed_messages=[r.get('role_error') for r in all_runs if r['role_rc']],
               profile=median_profile([r['role_tasks'] for r in runs]),
               old_steps=dict((k, median([r['old_steps'][k] for r in runs])) for k in baselines.SERIAL_STEPS))
    res['speedup_of_medians'] = res['old_scaled_median'] / res['role_median']
    return res


# -- hosts -----------------------------------------------------------------------------------------

HOST_SIDES = ('one', 'two')


def case_hosts(b: Bench) -> Dict[str, dict]:
    """COUNT images of 1 MiB, replicated once by the bench (not timed); per run, for each side in turn, a few
    KiB of fresh data in every image (not timed) and a full nightly role run (timed): ``one`` with the
    test bed's inventory (one source host, one backup host), ``two`` with source2 and backup2 added (the
    source hosts share the pool's images, the backup hosts are taken in turn), alternating which goes
    first.  All four "hosts" are this machine: two/one is the cost of coordination, not the speed-up."""
    missing = b.bed.second_hosts_missing()
    if missing:
        why = 'the test bed has no second sshd %s: run bash tests/testbed/testbed.sh up' % ', '.join(missing)
        log('hosts skipped: ' + why)
        b.notes.append('HOSTS skipped: ' + why)
        return {}
    count = b.args.images
    b.ensure_space(2 * count * MiB, 2 * count * MiB, 'hosts setup')
    pool = b.make_pool('hosts')
    names = ['img-%03d' % i for i in range(count)]
    inventories = dict(one=b.bed.inventory, two=b.bed.two_hosts_inventory(os.path.join(b.tmp, 'two-hosts.yml')))
    names_of = dict((a, h) for h, a in b.bed.second_hosts().items())
    names_of[b.env.get('DST_HOST', '127.0.0.3')] = 'backup'
    log('hosts setup: creating %d images of 1 MiB with a few KiB written' % count)
    small_images(b, ((pool, names),))
    log('hosts setup: initial replication of %d images by the bench (8 at a time)' % count)
    baselines.initial_copies(b, [(pool, n) for n in names], yesterday_stamp(), 'hosts')
    runs = []
    for i in range(b.args.runs):
        rec = dict(order=alternate(i, *HOST_SIDES))
        for who in rec['order']:
            _write_small(b, pool, names, 'hosts run %d/%d (%s host%s)' % (
                i + 1, b.args.runs, who, '' if who == 'one' else 's'))
            rec[who] = _hosts_record(b.role(pool, {}, 'hosts-%s#%d' % (who, i), inventory=inventories[who]), names_of)
        rec['ratio'] = rec['two']['wall'] / rec['one']['wall']
        log('hosts run %d: %d images with changes: one host %.1fs, two hosts %.1fs (%s): two/one %.2f' % (
            i + 1, count, rec['one']['wall'], rec['two']['wall'], _fmt_carried(rec['two']), rec['ratio']))
        runs.append(rec)
    b.drop_pool(pool)
    return {'hosts': _hosts_result(runs, count)}


def _write_small(b, pool, names, what):
    """A few KiB of unique random data into every image, at a random 4 KiB-aligned offset (never timed)."""
    log('%s: writing 8 KiB into each of %d images (not timed)' % (what, len(names)))
    with b.bed.src.cluster.open_ioctx(pool) as io:
        for n in names:
            with librbd.Image(io, n) as img:
                img.write(os.urandom(8192), random.randrange(0, MiB - 8192, 4096))


def _hosts_record(r, names_of):
    """What a hosts run keeps: per source host the images it carried (the role's set_stats summary, keyed by
    source host), how many of them sent data, and the backup host its transfer ran on (callback records)."""
    summary = ((r.get('custom') or {}).get('_run') or {}).get('rbd_replicate') or {}
    carried, sent = {}, {}
    for host, totals in summary.items():
        mine = [e for e in totals.get('per_image') or [] if e.get('action') != 'orphaned']
        carried[host] = len(mine)
        sent[host] = sum(1 for e in mine if not e.get('unchanged') and not e.get('failed'))
    xfer = [t for t in r['tasks'] if (t.get('action') or '').endswith('rbd_diff_transfer')]
    via = dict((h, names_of.get(x.get('delegated_to'), x.get('delegated_to')))
               for h, x in ((xfer[0].get('hosts') or {}) if xfer else {}).items())
    return dict(wall=r['wall'], rc=r['rc'], error=failed_msg(r), tasks=task_table(r), carried=carried, sent=sent,
                via=via, failed_images=sum(t.get('failed') or 0 for t in summary.values()))


def _fmt_carried(x):
    return ', '.join('%s %d images (%d sent) via %s' % (h, n, x['sent'].get(h, 0), x['via'].get(h) or '?')
                     for h, n in sorted(x['carried'].items())) or 'no set_stats summary'


def _hosts_result(all_runs: List[dict], count: int) -> dict:
    def ok(r):
        return not r['one']['rc'] and not r['two']['rc']
    runs = good_or_all(all_runs, ok)
    one = median([r['one']['wall'] for r in runs])
    two = median([r['two']['wall'] for r in runs])
    profile_one = median_profile([r['one']['tasks'] for r in runs])
    # a model, not a measurement: real hosts halve the per-image tasks and keep the rest (start-up, lock,
    # listing, the other tasks), each host paying it in parallel
    per_image = sum(p['wall'] for p in profile_one if p['module'] in PER_IMAGE_MODULES)
    total = sum(p['wall'] for p in profile_one)
    return dict(images=count, runs=all_runs, good_runs=len([r for r in all_runs if ok(r)]),
                one_median=one, two_median=two, ratio_of_medians=two / one,
                ratio_median=median([r['ratio'] for r in runs]),
                carried=runs[-1]['two']['carried'], sent=runs[-1]['two']['sent'], via=runs[-1]['two']['via'],
                carried_stable=len(set(tuple(sorted(r['two']['carried'].items())) for r in runs)) == 1,
                failed_runs=sum(1 for r in all_runs if not ok(r)),
                failed_messages=[r[w]['error'] for r in all_runs for w in HOST_SIDES if r[w]['rc']],
                per_image_tasks_one=per_image, real_hosts_model=(total - per_image / 2) / total if total else None,
                profile=median_profile([r['two']['tasks'] for r in runs]), profile_one=profile_one)


# -- direct, restore (#13) -------------------------------------------------------------------------

DIRECT_ORDER = ('direct', 'raw', 'pull')


def _ro_user(b: Bench, pool: str) -> dict:
    """A read-only cephx user on the source cluster for the pool (the README's least privilege), its keyring
    in the bench's temporary directory: what the backup host reads the source with in direct mode."""
    user = 'bench-direct-ro-%s' % pool
    out = b.bed.src.run('auth', 'get-or-create', 'client.' + user, 'mon', 'profile rbd',
                        'osd', 'profile rbd-read-only pool=%s' % pool, tool='ceph').stdout
    keyring = os.path.join(b.tmp, '%s.keyring' % user)
    with open(keyring, 'wb') as f:
        f.write(out)
    return dict(conf=b.bed.src.conf, user=user, keyring=keyring)


def case_direct(b: Bench) -> Dict[str, dict]:
    """transport direct vs the raw local pipe between the two clusters, and the role with pull on the same
    data: SIZE of fresh changes on one image per run; the three in rotating order; each into its own
    destination pool (direct: P, raw: Praw, pull: Ppull), so each sends exactly the run's changes."""
    size = b.args.size
    b.ensure_space(2 * size, 3 * 2 * size, 'direct setup')
    pool = b.make_pool('direct')
    raw_pool = b.make_pool('directraw', clusters=(b.bed.dst,))
    pull_pool = b.make_pool('directpull', clusters=(b.bed.dst,))
    ro = _ro_user(b, pool)
    ro_args = ['--conf', ro['conf'], '--id', ro['user'], '--keyring', ro['keyring']]
    b.bed.src.create(pool, 'vm', size)
    b.bed.dst.create(raw_pool, 'vm', size)
    b.bed.src.write(pool, 'vm', 0, os.urandom(4 * MiB))
    keep = dict(rbd_replicate_retention_dest=dict(last=1))
    extra = dict(direct=dict(keep, rbd_replicate_transport='direct', rbd_replicate_direct_ceph=ro,
                             rbd_replicate_lock_renew=False),
                 pull=dict(keep, rbd_replicate_pools=[dict(pool=pool, dest_pool=pull_pool)]))
    log('direct setup: initial replication of a %s image with 4 MiB written (direct, pull, raw)' % human(size))
    for who in ('direct', 'pull'):
        r = b.role(pool, extra[who], 'direct-initial-%s' % who)
        if r['rc']:
            raise RuntimeError('direct: the initial %s role run failed: %s' % (who, failed_msg(r)))
    b.bed.src.snap(pool, 'vm', 'raw-0000')
    wall, rc, _st, err = b.bash('%s export-diff --no-progress %s/vm@raw-0000 - | %s import-diff --no-progress - '
                                '%s/vm' % (quoted(['rbd'] + ro_args), pool,
                                           baselines.shell(b.bed).d, raw_pool))
    if rc:
        raise RuntimeError('direct: the initial raw copy failed: %s' % err)
    prev, runs = 'raw-0000', []
    for i in range(b.args.runs):
        try:
            b.ensure_space(size, 3 * size, 'direct run %d' % (i + 1))
        except NoSpace as e:
            b.notes.append('DIRECT: %d of %d runs: %s' % (len(runs), b.args.runs, e))
            break
        log('direct run %d/%d: writing %s of fresh data (not timed)' % (i + 1, b.args.runs, human(size)))
        write_fresh(b.bed.src, [(pool, 'vm')], size, 'random')
        k = i % len(DIRECT_ORDER)
        rec = dict(order=list(DIRECT_ORDER[k:] + DIRECT_ORDER[:k]))
        for who in rec['order']:
            if who == 'raw':
                new = 'raw-%04d' % (i + 1)
                o = baselines.raw_direct(b, pool, prev, new, raw_pool, ro_args)
                prev = new
                rec.update(raw=o['wall'], raw_rc=o['rc'], raw_err=o['err'] if o['rc'] else '')
            else:
                r = b.role(pool, extra[who], 'direct-%s#%d' % (who, i))
                xf = transfer_images(r)
                rec.update({who: r['wall'], who + '_rc': r['rc'], who + '_error': failed_msg(r),
                            who + '_transfer_s': (xf[0] if xf else {}).get('seconds'),
                            who + '_data_bytes': (xf[0] if xf else {}).get('data_bytes'),
                            who + '_tasks': task_table(r)})
        rec['ratio'] = rec['direct'] / rec['raw'] if rec.get('raw') else None
        rec['pull_ratio'] = rec['pull'] / rec['raw'] if rec.get('raw') else None
        log('direct run %d: role direct %.1fs (its transfer %.1fs), raw pipe %.1fs, role pull %.1fs: direct/raw %.2f'
            % (i + 1, rec['direct'], rec['direct_transfer_s'] or -1, rec['raw'] or -1, rec['pull'],
               rec['ratio'] or -1))
        runs.append(rec)
    b.bed.src.run('auth', 'rm', 'client.' + ro['user'], tool='ceph', check=False)
    for p in (pool, raw_pool, pull_pool):
        b.drop_pool(p)
    if not runs:
        return {}

    def ok(r):
        return not r['direct_rc'] and not r['pull_rc'] and not r['raw_rc']
    good = good_or_all(runs, ok)
    res = dict(size=size, runs=runs, good_runs=len([r for r in runs if ok(r)]),
               **_medians(good, 'direct', 'raw', 'pull', 'direct_transfer_s', 'pull_transfer_s', 'ratio',
                          'pull_ratio'),
               profile=median_profile([r['direct_tasks'] for r in good]),
               profile_pull=median_profile([r['pull_tasks'] for r in good]))
    res['ratio_of_medians'] = res['direct_median'] / res['raw_median']
    return {'direct': res}


def case_restore(b: Bench) -> Dict[str, dict]:
    """The restore playbook: a full restore of a SIZE image to a new image vs ``rbd export | ssh | rbd import``
    (alternating), and an in-place restore after a 1% change (rbd_restore_to the original name with
    rbd_restore_overwrite) vs the full restore's median."""
    size = b.args.size
    b.ensure_space(4 * size, 2 * size, 'restore setup')
    pool = b.make_pool('restore')
    b.bed.src.create(pool, 'vm', size)
    log('restore setup: writing %s and replicating it (not timed)' % human(size))
    write_fresh(b.bed.src, [(pool, 'vm')], size, 'random')
    r = b.role(pool, dict(rbd_replicate_verify='none'), 'restore-initial')
    if r['rc']:
        raise RuntimeError('restore: the initial role run failed: %s' % failed_msg(r))
    snap = transfer_images(r)[0]['snapshot']
    evars = dict(rbd_restore_image='vm', rbd_restore_pool=pool, rbd_restore_snapshot=snap)
    runs = []
    for i in range(b.args.runs):
        b.ensure_space(2 * size, size, 'restore run %d' % (i + 1))
        rec = {}
        for who in alternate(i, 'role', 'raw'):
            new = '%s-%d' % (who, i)
            if who == 'raw':
                o = baselines.raw_restore(b, pool, snap, new)
                rec.update(raw=o['wall'], raw_rc=o['rc'], raw_err=o['err'] if o['rc'] else '')
            else:
                r = b.role(pool, dict(evars, rbd_restore_to=new), 'restore-full#%d' % i,
                           playbook='ceph_rbd.backup.restore')
                rec.update(role=r['wall'], role_rc=r['rc'], role_error=failed_msg(r), role_tasks=task_table(r))
            # untimed: drop the restored image (the playbook's has the snapshot import-diff made)
            b.bed.src.run('snap', 'purge', '--no-progress', '%s/%s' % (pool, new), check=False, timeout=600)
            b.bed.src.run('rm', '--no-progress', '%s/%s' % (pool, new), check=False, timeout=600)
        # in place: 1% of the image changed on the source since the snapshot
        change = max(MiB, size // 100 // MiB * MiB)     # whole MiB (data.write_fresh)
        write_fresh(b.bed.src, [(pool, 'vm')], change, 'random', offset=(i * 7 * change) % (size - change))
        r = b.role(pool, dict(evars, rbd_restore_to='vm', rbd_restore_overwrite=True), 'restore-inplace#%d' % i,
                   playbook='ceph_rbd.backup.restore')
        rec.update(inplace=r['wall'], inplace_rc=r['rc'], inplace_error=failed_msg(r), inplace_tasks=task_table(r))
        rec['ratio'] = rec['role'] / rec['raw'] if rec.get('raw') else None
        log('restore run %d: playbook full %.1fs, raw export|ssh|import %.1fs (%.2fx); in place after 1%%: %.1fs'
            % (i + 1, rec['role'], rec['raw'] or -1, rec['ratio'] or -1, rec['inplace']))
        runs.append(rec)
    b.drop_pool(pool)

    def ok(r):
        return not r['role_rc'] and not r['raw_rc'] and not r['inplace_rc']
    good = good_or_all(runs, ok)
    res = dict(size=size, snapshot=snap, runs=runs, good_runs=len([r for r in runs if ok(r)]),
               **_medians(good, 'role', 'raw', 'inplace', 'ratio'),
               profile=median_profile([r['role_tasks'] for r in good]),
               profile_inplace=median_profile([r['inplace_tasks'] for r in good]))
    res['ratio_of_medians'] = res['role_median'] / res['raw_median']
    res['inplace_share'] = res['inplace_median'] / res['role_median']
    return {'restore': res}
