"""The command line: options, which steps run in which order, the run itself and the report."""

import argparse
import functools
import os
import re
import signal
import sys
import traceback
from typing import Callable, List, Optional, Tuple

from . import cases, edges, fleet, link, profile, report
from .cluster import librbd
from .common import GiB, HERE, MiB, REPO, RUN_ID, NoSpace, human, log
from .runner import Bench, disk_free

DESCRIPTION = 'Benchmark of the ceph_rbd.backup collection against the old per-image script (a benchmark, not a test).'
ALL_CASES = 'p1,p3,p4,p1z,ovh,ab,p2,prof,hosts,direct,restore,first,push,k1'
# --quick / full: changed data per throughput run, p4's small change, p2 and hosts images, p2 sample, ab size,
# budget (min), k1 images
SIZES = {True: dict(size=256 * MiB, mem_small=32 * MiB, images=50, sample=5, ab_size=128 * MiB, budget=8,
                    k1_images=200),
         False: dict(size=2 * GiB, mem_small=256 * MiB, images=200, sample=20, ab_size=256 * MiB, budget=15,
                     k1_images=1000)}

Step = Tuple[str, Callable[[], None]]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument('--runs', '-n', type=int, default=None, help='runs per case (default 3)')
    ap.add_argument('--link', default='1gbit',
                    help='p1z: shape the ssh link to this tc rate (e.g. 1gbit, 500mbit) or none (plain loopback)')
    ap.add_argument('--quick', action='store_true', help='smaller sizes: 256 MiB, 50 images (sample 5)')
    ap.add_argument('--cases', default=ALL_CASES,
                    help='comma list of p1,p1z,p3,p4,ovh,ab,p2,prof,hosts,direct,restore,first,push,k1 (run in this '
                         'order; p3 and p4 always run together; prof needs p2)')
    ap.add_argument('--size', type=str, default=None,
                    help='changed data per run for p1/p1z/p3/direct, the image of restore (e.g. 2G)')
    ap.add_argument('--images', type=int, default=None, help='p2, hosts, first and push: images in the pool')
    ap.add_argument('--k1-images', type=int, default=None, help='k1: images in the pool (default 1000, --quick 200)')
    ap.add_argument('--sample', type=int, default=None, help='p2: images the serial loop is timed on')
    ap.add_argument('--keep-pools', action='store_true', help='do not remove the bench pools at the end')
    ap.add_argument('--budget', type=float, default=None,
                    help='minutes: p2 (last but hosts) does fewer runs (at least 1) when the next would end later '
                         '(default 15, --quick 8; 0: no limit)')
    ap.add_argument('--min-free', type=float, default=10,
                    help='GiB the host disk must keep free after each heavy step (default 10): the OSDs are '
                         'sparse files that only grow')
    ap.add_argument('--max-osd-use', type=float, default=0.7,
                    help='fraction of a test-bed OSD that may be allocated after a heavy step (default 0.7)')
    ap.add_argument('--run-timeout', type=int, default=300,
                    help='seconds one ansible-playbook run may take before the bench kills it (default 300)')
    ap.add_argument('--p2-initial', choices=['bench', 'role'], default='bench',
                    help='who makes the initial replication of the p2 pool (not timed; default bench)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'latest.json'))
    return ap


def parse_size(s: str) -> int:
    """'2G', '256M', '2GiB', '4096' -> bytes."""
    m = re.fullmatch(r'(\d+)([KMG]?)', s.upper().rstrip('IB').rstrip('I'))
    return int(m.group(1)) * {'': 1, 'K': 1024, 'M': MiB, 'G': GiB}[m.group(2)]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The options, with the defaults of --quick or full mode filled in."""
    args = parser().parse_args(argv)
    sizes = SIZES[bool(args.quick)]
    args.runs = args.runs or 3
    args.size = parse_size(args.size) if args.size else sizes['size']
    args.mem_small = min(sizes['mem_small'], args.size)
    args.images = args.images or sizes['images']
    args.k1_images = args.k1_images or sizes['k1_images']
    args.sample = args.sample or sizes['sample']
    args.ab_size = sizes['ab_size']
    args.budget = sizes['budget'] if args.budget is None else args.budget
    args.case_list = [c.strip() for c in args.cases.split(',') if c.strip()]
    args.prof_images = 5
    return args


def _store(b: Bench, case: Callable[[], dict]) -> Callable[[], None]:
    return lambda: b.results.update(case())


def _prof(b: Bench) -> None:
    try:
        b.results['prof'] = profile.profile_transfer(b, b.p2_ready['pool'], b.p2_ready['names'][:b.args.prof_images])
    except Exception as e:  # the profile is a diagnostic: never lose the other results for it
        log('profile failed: %s' % e)


def plan(b: Bench, wanted: List[str]) -> List[Step]:
    """The steps, in their fixed order, for the cases asked for."""
    steps = []
    if 'p1' in wanted or 'p3' in wanted:
        steps.append(('p1', _store(b, lambda: cases.case_p1(b, 'p1', 'random', None))))
    if 'p3' in wanted:
        # fresh pools for p3: dropping p1's (two 2 GiB images and their snapshots on the backup OSD) frees
        # their space at once; left to snapshot trimming, the OSD-space guard skipped p3
        steps += [('p1 teardown', lambda: cases.p1_teardown(b)), ('p3', _store(b, lambda: cases.case_p3(b)))]
    if 'p4' in wanted:
        steps.append(('p4', _store(b, lambda: cases.case_p4_small(b))))
    if 'p1z' in wanted:
        # fresh pools: dropping the p1 pools frees their space at once (removed snapshots are trimmed
        # slowly on the test bed's OSDs), so that p1z can write its 3 x 2 x 2 GiB
        steps += [('p1 teardown', lambda: cases.p1_teardown(b)),
                  ('p1z', _store(b, lambda: link.with_link(b.args.link, b.bed.ssh_port, lambda: cases.case_p1(
                      b, 'p1z', 'compressible', 'zstd'))))]
    steps.append(('p1 teardown', lambda: cases.p1_teardown(b)))
    steps += _single(b, wanted, ('ovh', 'ab'))
    if 'p2' in wanted:
        steps.append(('p2', _store(b, lambda: cases.case_p2(b))))
        if 'prof' in wanted:
            steps.append(('prof', lambda: _prof(b)))
        steps.append(('p2 teardown', lambda: cases.p2_teardown(b)))
    return steps + _single(b, wanted, ('hosts', 'direct', 'restore')) + _single(b, wanted, ('first',), edges) \
        + _single(b, wanted, ('push', 'k1'), fleet)


def _single(b: Bench, wanted: List[str], names: Tuple[str, ...], where=cases) -> List[Step]:
    """The wanted cases among ``names`` that are one call each (``where.case_<name>(b)``), in that order."""
    return [(n, _store(b, functools.partial(getattr(where, 'case_' + n), b))) for n in names if n in wanted]


def run_steps(b: Bench, steps: List[Step]) -> Optional[str]:
    """Run the steps (a step without space is skipped, and said so); returns why the run aborted, or None.
    Whatever happens, our module processes are killed, the shaped link and our pools removed."""
    try:
        for name, step in steps:
            try:
                step()
            except NoSpace as e:
                log('%s skipped: %s' % (name, e))
                b.notes.append('%s skipped: %s' % (name.upper(), e))
    except BaseException as e:  # report what we have, then clean up
        error = '%s: %s' % (type(e).__name__, e)
        log('ABORTED: %s' % error)
        traceback.print_exc()
        return error
    finally:
        b.kill_modules()
        b.watcher.stop()
        b.cleanup()
    return None


def _on_term(signum, _frame):
    raise KeyboardInterrupt('signal %d' % signum)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if librbd is None:
        sys.exit('python3-rbd does not import: run with the .venv (make bench)')
    os.environ.setdefault('ANSIBLE_COLLECTIONS_PATH', str(REPO / '.build' / 'collections'))
    b = Bench(args)
    signal.signal(signal.SIGTERM, _on_term)
    meta = report.start_meta(args, b.bed.inventory)
    log('run id %s; cases %s; %d runs each; %s per throughput run; load %.1f' % (
        RUN_ID, ','.join(args.case_list), args.runs, human(args.size), os.getloadavg()[0]))
    try:
        b.preflight()
    except Exception as e:
        b.watcher.stop()
        b.cleanup()
        sys.exit('bench: %s' % e)
    error = run_steps(b, plan(b, args.case_list))
    report.end_meta(meta, error, b.notes, disk_free(b.env['RBD_TESTBED_DIR']))
    report.report(args, meta, b.results, b.notes, error)
    return 1 if error else 0
