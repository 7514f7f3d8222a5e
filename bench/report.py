"""The report: the markdown table of medians and ratios, the per-task profiles, the JSON in bench/results/."""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from .analysis import module_wall
from .common import MiB, REPO, RUN_ID, T_START, human, median

HEADER = ['| case | runs | measured (median) | baseline (median, same runs) | ratio | target | verdict |',
          '|---|---|---|---|---|---|---|']


def verdict(ok: Optional[bool]) -> str:
    return 'met' if ok else ('NOT met' if ok is not None else 'n/a')


# -- the table -------------------------------------------------------------------------------------

def _p1_row(r, key, label):
    if key == 'p1':
        ok = r['ratio_of_medians'] <= 1.00     # issue #13 (it was 1.10 in #4, filed earlier)
        target = 'role/old <= 1.00'
        ratio = 'role/old %.2f' % r['ratio_of_medians']
    else:
        ok = r['speedup_of_medians'] >= 1.3
        target = 'old/role >= 1.3'
        ratio = 'old/role %.2f' % r['speedup_of_medians']
    if r['failed_role_runs'] or r['failed_old_runs']:
        ratio += ' (%d role runs FAILED)' % r['failed_role_runs']
    if not r.get('good_runs'):
        ok = False
        ratio = 'no valid run: the role FAILED'
        target += ' (role failed)'
    if r.get('link') and r['link'] != 'none':
        label += ', ssh link shaped to %s' % r['link']
    return [('%s, %s changed' % (label, human(r['size'])), len(r['runs']),
             'role %.1f s (its transfer %.1f s)' % (r['role_median'], r['role_transfer_median'] or 0),
             'old script %.1f s (its transfer %.1f s)' % (r['old_median'], r['old_transfer_median'] or 0),
             ratio, target, verdict(ok))]


def _p3_rows(r):
    st, rd = r['stream'], r['read']
    ok = st['ratio'] is not None and st['ratio'] <= 0.40     # issue #13 (it was 50% in #4, filed earlier)
    return [('P3 verify data (digest of the stream, the default), %s changed' % human(r['size']), len(r['runs']),
             'role %.1f s vs verify none %.1f s: +%.1f s (verify task %.1f s)' % (
                 st['role_median'], r['role_none_median'], st['added'], st['verify_tasks_wall_median']),
             'transfer %.1f s (seconds the module reports, verify none)' % (r['transfer_seconds_median'] or 0),
             '+%.0f%%' % (100 * (st['ratio'] or 0)), '<= 40%', verdict(ok)),
            ('P3 verify data with a second read of the source (rbd_replicate_verify_source=read)',
             len(r['runs']), 'role %.1f s: +%.1f s (verify tasks %.1f s)' % (
                 rd['role_median'], rd['added'], rd['verify_tasks_wall_median']),
             'transfer %.1f s' % (r['transfer_seconds_median'] or 0), '+%.0f%%' % (100 * (rd['ratio'] or 0)),
             '(informative)', '-')]


def _p4_rows(r):
    sizes = [str(x) for x in r['sizes']]
    parts, ok = [], True
    for mod in ('rbd_diff_transfer', 'rbd_extent_verify'):
        vals = [r['peak_hwm'][x].get(mod) for x in sizes]
        if None in vals:
            ok = None if ok is True else ok
        parts.append('%s %s MiB' % (mod.replace('rbd_', ''), ' -> '.join(
            '%.0f' % (v / MiB) if v is not None else '?' for v in vals)))
        known = [v for v in vals if v is not None]
        if any(v > 100 * MiB for v in known) or (len(known) > 1 and known[-1] - known[0] > 10 * MiB):
            ok = False
    if len(sizes) < 2:
        ok = None
    return [('P4 peak RSS of the module processes, %s' % ' -> '.join(human(int(x)) for x in sizes),
             '-', '; '.join(parts), '-', '-', '<= 100 MiB, growth <= 10 MiB', verdict(ok))]


def _p2_rows(r):
    ok = r['role_median'] <= 25 and r['speedup_of_medians'] >= 20
    good = len(r['runs']) - r['failed_role_runs']
    measured = 'role %.1f s' % r['role_median']
    ratio = 'old/role %.1f' % r['speedup_of_medians']
    if not good:
        ok = False
        xfer = median([module_wall(x['role_tasks'], 'rbd_diff_transfer') for x in r['runs']])
        measured = 'role FAILED in every run (until the failure %.1f s, its transfer step alone %.1f s)' % (
            r['role_median'], xfer)
        ratio = 'no valid run'
    return [('P2 scale, %d images, nothing changed' % r['images'], len(r['runs']),
             measured,
             'serial loop %.0f s (%.2f s/image, timed on %d images, x %d)' % (
                 r['old_scaled_median'], r['old_per_image_median'], r['sample'], r['images']),
             ratio, 'role <= 25 s, old/role >= 20', verdict(ok))]


def _ovh_rows(r):
    return [('Fixed cost of a role run (1 unchanged 1 MiB image)', len(r['runs']),
             'ssh pipelining on %.1f s' % r['pipelining_median'], 'off %.1f s' % r['default_median'],
             'on/off %.2f' % r['ratio_median'], '(informative)', '-')]


def _ab_rows(r):
    return [('import-diff /dev/stdin vs - (%s, local pipe)' % human(r['size']), len(r['runs']),
             '/dev/stdin %.2f s' % r['devstdin_median'], '- %.2f s' % r['dash_median'],
             '/dev/stdin / - %.2f' % r['ratio_median'], '(informative)', '-')]


def _hosts_rows(r):
    carried = ', '.join('%s %d images via %s' % (h, n, r['via'].get(h) or '?') for h, n in sorted(r['carried'].items()))
    if not r['carried_stable']:
        carried += ', shares differ between runs'
    ratio = 'two/one %.2f' % r['ratio_of_medians']
    if r['failed_runs']:
        ratio += ' (%d runs FAILED)' % r['failed_runs']
    if not r['good_runs']:
        ratio = 'no valid run: the role FAILED'
    model = ('; real hosts (own CPUs and NICs), if the per-image tasks halve: ~%.2f' % r['real_hosts_model']
             if r.get('real_hosts_model') else '')
    return [('Hosts: one vs two source+backup hosts sharing a pool, %d images with changes (all "hosts" share '
             'this machine\'s %d CPUs: the cost of coordination, not the speed-up)' % (r['images'], os.cpu_count()),
             len(r['runs']), 'two hosts %.1f s (%s)' % (r['two_median'], carried or 'no set_stats summary'),
             'one host %.1f s' % r['one_median'], ratio, '(informative%s)' % model, '-')]


def _direct_rows(r):
    ratio = 'direct/raw %.2f' % r['ratio_of_medians']
    if r['good_runs'] < len(r['runs']):
        ratio += ' (%d runs with a FAILED step)' % (len(r['runs']) - r['good_runs'])
    return [('Direct: role with rbd_replicate_transport=direct (read-only source user), %s changed'
             % human(r['size']), len(r['runs']),
             'role direct %.1f s (its transfer %.1f s)' % (r['direct_median'], r['direct_transfer_s_median'] or 0),
             'raw local pipe export-diff \\| import-diff %.1f s' % r['raw_median'], ratio, 'direct/raw <= 1.15',
             verdict(r['ratio_of_medians'] <= 1.15)),
            ('Direct: the role with pull (over ssh) on the same data, same runs', len(r['runs']),
             'role pull %.1f s (its transfer %.1f s)' % (r['pull_median'], r['pull_transfer_s_median'] or 0),
             'raw local pipe %.1f s' % r['raw_median'], 'pull/raw %.2f, direct/pull %.2f' % (
                 r['pull_median'] / r['raw_median'], r['direct_median'] / r['pull_median']), '(informative)', '-')]


def _restore_rows(r):
    ratio = 'playbook/raw %.2f' % r['ratio_of_medians']
    if r['good_runs'] < len(r['runs']):
        ratio += ' (%d runs with a FAILED step)' % (len(r['runs']) - r['good_runs'])
    return [('Restore: %s image to a new image, playbook ceph_rbd.backup.restore (verify data)' % human(r['size']),
             len(r['runs']), 'playbook %.1f s' % r['role_median'],
             'rbd export \\| ssh \\| rbd import %.1f s' % r['raw_median'], ratio, 'playbook/raw <= 1.15',
             verdict(r['ratio_of_medians'] <= 1.15)),
            ('Restore in place after a 1% change (rbd_restore_to the original, rbd_restore_overwrite)',
             len(r['runs']), 'playbook %.1f s' % r['inplace_median'], 'full restore %.1f s' % r['role_median'],
             'in place/full %.0f%%' % (100 * r['inplace_share']), '<= 10%', verdict(r['inplace_share'] <= 0.10))]


def _first_rows(r):
    ratio = 'loop/role %.1f' % r['speedup_of_medians']
    if r['good_runs'] < len(r['runs']):
        ratio += ' (%d runs FAILED or not all first syncs)' % (len(r['runs']) - r['good_runs'])
    return [('First sync: %d new images x 1 MiB (960 KiB of data each), the role\'s first nightly run'
             % r['images'], len(r['runs']), 'role %.1f s' % r['role_median'],
             'serial loop of first copies %.0f s (%.2f s/image, timed on %d images, x %d)' % (
                 r['loop_median'], r['loop_per_image_median'], r['sample'], r['images']),
             ratio, 'role <= 15 s, loop/role >= 5',
             verdict(r['role_median'] <= 15 and r['speedup_of_medians'] >= 5))]


def _failed_runs(r):
    """push, k1: how many runs failed or missed images, and the first error, for the ratio column."""
    bad = len(r['runs']) - r['good_runs']
    if not bad:
        return ''
    first = (r['failed_messages'] or ['not every image carried'])[0]
    return ' (%d runs FAILED: %s)' % (bad, str(first)[:200].replace('|', '/').replace('\n', ' '))


def _push_rows(r):
    return [('Push vs pull: a nightly role run over %d unchanged images x 1 MiB, rbd_replicate_transport push'
             % r['images'], len(r['runs']), 'push %.1f s' % r['push_median'], 'pull (the default) %.1f s'
             % r['pull_median'], 'push/pull %.2f%s' % (r['ratio_of_medians'], _failed_runs(r)),
             'push/pull <= 1.5', verdict(r['ratio_of_medians'] <= 1.5 and r['good_runs'] > 0))]


def _k1_rows(r):
    return [('%d unchanged images x 1 MiB: a full nightly role run (verify, prune both sides)' % r['images'],
             len(r['runs']), 'role %.1f s' % r['role_median'],
             '- (per image %.3f s: compare P2, 200 images)' % r['per_image'],
             'role/45 s %.2f%s' % (r['role_median'] / 45, _failed_runs(r)), 'role <= 45 s',
             verdict(r['role_median'] <= 45 and r['good_runs'] > 0))]


ROWS = (('p1', lambda r: _p1_row(r, 'p1', 'P1 throughput')),
        ('p1z', lambda r: _p1_row(r, 'p1z', 'P1 zstd, compressible data')),
        ('p3', _p3_rows), ('p4', _p4_rows), ('p2', _p2_rows), ('ovh', _ovh_rows), ('ab', _ab_rows),
        ('hosts', _hosts_rows), ('direct', _direct_rows), ('restore', _restore_rows), ('first', _first_rows),
        ('push', _push_rows), ('k1', _k1_rows))


def _notes(results, extra_notes):
    notes = list(extra_notes)
    p2 = results.get('p2')
    if p2 and p2.get('budget_note'):
        notes.append('P2: ' + p2['budget_note'])
    for key in ('p1', 'p1z', 'p2'):
        r = results.get(key)
        if r and r.get('failed_role_runs'):
            notes.append('%s: %d role run(s) FAILED (left out of the medians unless all failed): %s' % (
                key.upper(), r['failed_role_runs'], ' | '.join(
                    str(x.get('role_error'))[:300] for x in r['runs'] if x.get('role_rc'))))
    r = results.get('p3')
    if r and r.get('failed_runs'):
        notes.append('P3: %d role run(s) FAILED: %s' % (r['failed_runs'], ' | '.join(
            str(x.get('error'))[:300] for run in r['runs'] for x in run.values() if x.get('rc'))))
    r = results.get('hosts')
    if r and r.get('failed_runs'):
        notes.append('HOSTS: %d run(s) with a FAILED role run (left out of the medians unless all failed): %s' % (
            r['failed_runs'], ' | '.join(str(m)[:300] for m in r['failed_messages'])))
    if p2:
        notes.append('P2: the serial loop is timed on %d of the %d images and scaled by %d/%d.'
                     % (p2['sample'], p2['images'], p2['images'], p2['sample']))
    return notes


def summarize(results: Dict[str, dict], extra_notes: Iterable[str] = ()) -> str:
    """The markdown table (one row a case, two for p3) and the notes under it."""
    lines = list(HEADER)
    for key, rows in ROWS:
        if results.get(key):
            lines += ['| ' + ' | '.join(str(x) for x in row) + ' |' for row in rows(results[key])]
    return '\n'.join(lines + [''] + _notes(results, extra_notes))


# -- the profiles ----------------------------------------------------------------------------------

def _task_profile(title, prof):
    total = sum(p['wall'] for p in prof)
    out = ['\n%s: where the time goes (median per task, %.1fs in all)' % (title, total),
           '| task | wall s | module process s | module CPU s |', '|---|---|---|---|']
    for p in prof:
        if p['wall'] < 0.05 and not p['module']:
            continue
        out.append('| %s | %.2f | %s | %s |' % (p['name'][:70], p['wall'],
                                                '%.2f' % p['proc_s'] if p['proc_s'] is not None else '',
                                                '%.2f' % p['proc_cpu'] if p['proc_cpu'] is not None else ''))
    mods = [p for p in prof if p['module']]
    mod_wall = sum(p['wall'] for p in mods)
    out.append('module tasks: %d, %.1fs of %.1fs; other tasks and start-up: %.1fs'
               % (len(mods), mod_wall, total, total - mod_wall))
    return out


def _call_profile(variant, r):
    if variant == 'librbd floor':
        out = ['\nThe same queries through python3-rbd, in-process (one connection): %.3fs per image '
               '(median of %d):' % (r['wall_median'], r['images'])]
    else:
        out = ['\nrbd_diff_transfer code in-process, one unchanged image at a time, data stream %s: '
               '%.2fs per image (median of %d, action %s); the calls it makes (outermost only):'
               % (variant, r['wall_median'], r['images'], '/'.join(r.get('actions') or []))]
    out += ['| call | count | s |', '|---|---|---|']
    out += ['| %s | %g | %.3f |' % (c['call'], c['n'], c['s']) for c in r['calls']]
    return out


def profile_text(results: Dict[str, dict]) -> str:
    """Per role case, the median time of each task; after p2, the in-process transfer profile."""
    out = []
    for key, title in (('p1', 'P1 role run'), ('p1z', 'P1 zstd role run'),
                       ('p3', 'P3 role run, verify data against the stream digest'),
                       ('ovh', 'Role run on 1 unchanged image (ssh pipelining on)'),
                       ('direct', 'Direct role run (transport direct)'),
                       ('restore', 'Restore playbook, full restore to a new image'),
                       ('p2', 'P2 role run (%s images)' % (results.get('p2') or {}).get('images')),
                       ('first', 'First sync role run (%s new images)' % (results.get('first') or {}).get('images')),
                       ('push', 'Push role run (%s unchanged images, transport push)'
                        % (results.get('push') or {}).get('images')),
                       ('k1', 'Role run over %s unchanged images' % (results.get('k1') or {}).get('images'))):
        r = results.get(key)
        if r and r.get('profile'):
            out += _task_profile(title, r['profile'])
    r = results.get('hosts')
    if r and r.get('profile'):
        out += _task_profile('Hosts: role run with one source and one backup host (%d images)' % r['images'],
                             r['profile_one'])
        out += _task_profile('Hosts: role run with two source and two backup hosts (%d images; a task ends with '
                             'its last host)' % r['images'], r['profile'])
    for key, sub, title in (('direct', 'profile_pull', 'Direct case: role run with pull, same data'),
                            ('restore', 'profile_inplace', 'Restore playbook, in place after a 1% change'),
                            ('push', 'profile_pull', 'Push case: role run with pull (the default), same images')):
        r = results.get(key)
        if r and r.get(sub):
            out += _task_profile(title, r[sub])
    for variant, r in (results.get('prof') or {}).items():
        out += _call_profile(variant, r)
    return '\n'.join(out)


# -- meta, JSON, stdout ----------------------------------------------------------------------------

def _stdout(*cmd):
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False).stdout.strip()


def start_meta(args: argparse.Namespace, inventory: str) -> dict:
    """What the JSON says about the run, as it starts."""
    return dict(started=datetime.datetime.now().isoformat(timespec='seconds'), quick=args.quick, runs=args.runs,
                cases=args.case_list, size=args.size, images=args.images, sample=args.sample, nproc=os.cpu_count(),
                loadavg_start=os.getloadavg(), run_id=RUN_ID,
                inventory_pipelining='ansible_pipelining: true' in Path(inventory).read_text(),
                git=_stdout('git', '-C', str(REPO), 'log', '-1', '--format=%h %s'),
                git_dirty=bool(_stdout('git', '-C', str(REPO), 'status', '--porcelain', '--', 'plugins', 'roles')),
                ceph=_stdout('ceph', '--version'))


def end_meta(meta: dict, error: Optional[str], notes: List[str], free_bytes: int) -> None:
    meta.update(runtime_s=round(time.monotonic() - T_START, 1), loadavg_end=os.getloadavg(), error=error,
                notes=notes, disk_free_end=human(free_bytes))


def write_json(doc: dict, out: str, quick: bool) -> None:
    """``out`` (bench/results/latest.json) and a time-stamped copy next to it."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(doc, f, indent=1, default=str)
    stamped = os.path.join(os.path.dirname(out), 'bench-%s%s.json' % (
        datetime.datetime.now().strftime('%Y%m%dT%H%M%S'), '-quick' if quick else ''))
    shutil.copyfile(out, stamped)


def print_report(args: argparse.Namespace, meta: dict, table: str, prof: str, error: Optional[str]) -> None:
    print()
    print('## ceph_rbd.backup bench (%s, %d runs per case, %s per throughput run, run id %s)' % (
        'quick' if args.quick else 'full', args.runs, human(args.size), RUN_ID))
    print()
    print('collection at %s%s; ssh pipelining in the inventory: %s' % (
        meta['git'], ' (+ uncommitted changes)' if meta['git_dirty'] else '',
        'on' if meta['inventory_pipelining'] else 'off'))
    print()
    print(table)
    print(prof)
    print()
    print('runtime %.0fs; load average %.1f at start, %.1f at end; results in %s' % (
        meta['runtime_s'], meta['loadavg_start'][0], meta['loadavg_end'][0], args.out))
    if error:
        print('ABORTED: %s' % error)


def report(args: argparse.Namespace, meta: dict, results: Dict[str, dict], notes: Sequence[str],
           error: Optional[str]) -> None:
    """Write the JSON and print the report."""
    doc = dict(meta=meta, results=results)
    table = summarize(results, notes) if results else '(no results)'
    prof = profile_text(results)
    doc['table_markdown'] = table
    doc['profile_markdown'] = prof
    write_json(doc, args.out, args.quick)
    print_report(args, meta, table, prof, error)
