"""Destination dead or full during a run: a bounded, clear failure, then a clean retry.

These stop the backup cluster's OSD or mark it full, so they run last (file name) and restore it.
"""

import json
import subprocess
import time

from conftest import TESTBED, random_data
from test_faults import _pids
from test_modules import snap, transfer
from test_replicate import assert_replicated

MiB = 1 << 20


def _start_transfer(bed, pools, **extra):
    args = dict(source_pool=pools, images=['vm'], timeout=15, bwlimit='32M')
    args.update(bed.pull_args())
    args.update(extra)
    args.setdefault('ceph', bed.dst.ceph_args())
    return subprocess.Popen(['ansible', 'backup', '-i', bed.inventory, '-m', 'ceph_rbd.backup.rbd_diff_transfer',
                             '-a', json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=bed.ansible_env(), text=True)


def _prepare(bed, pools):
    bed.src.create(pools, 'vm', 128 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-a')
    transfer(bed, pools, ['vm'])
    for i in range(4):
        bed.src.write(pools, 'vm', (8 + 16 * i) * MiB, random_data(16 * MiB, seed=2 + i))
    snap(bed, pools, 'vm', 'backup-b')


def _wait_for_import(pools):
    deadline = time.time() + 60
    while time.time() < deadline and not _pids('import-diff .*--pool %s ' % pools):
        time.sleep(0.2)
    assert _pids('import-diff .*--pool %s ' % pools), 'the import never started'


def test_destination_osd_dies_mid_run(bed, pools):
    _prepare(bed, pools)
    proc = _start_transfer(bed, pools)
    _wait_for_import(pools)
    time.sleep(1)
    t0 = time.time()
    subprocess.run(['bash', str(TESTBED), 'osd-stop', 'backup'], check=True, timeout=60)
    try:
        out = proc.communicate(timeout=240)[0]
        waited = time.time() - t0
        assert proc.returncode != 0, out
        assert 'vm' in out and ('timeout' in out or 'timed out' in out or 'failed' in out), out[-3000:]
        assert waited < 120, waited                   # bounded by the timeout, not a hang
        assert not _pids('import-diff .*--pool %s ' % pools) and not _pids('export-diff .*--pool %s ' % pools)
    finally:
        subprocess.run(['bash', str(TESTBED), 'osd-start', 'backup'], check=True, timeout=300)
    assert bed.dst.snaps(pools, 'vm') == ['backup-a']
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert r['action'] == 'incremental' and r['base'] == 'backup-a'
    assert_replicated(bed, pools, 'vm')


def _inject_full(bed, state):
    """Make the backup OSD believe it is full (its own failsafe check: writes block), or clear it.

    Without a mgr the cluster never computes pool/OSD usage, so set-full-ratio or pool quotas do
    nothing here; the OSD's injectfull is what Ceph's own tests use.
    """
    asok = '%s/backup/run/osd.0.asok' % bed.dir
    subprocess.run(['ceph', '--admin-daemon', asok, 'injectfull', state, '-1'], check=True, timeout=30,
                   capture_output=True)


def test_destination_full_mid_run(bed, pools):
    _prepare(bed, pools)
    proc = _start_transfer(bed, pools, bwlimit='8M')
    _wait_for_import(pools)
    time.sleep(1)
    _inject_full(bed, 'failsafe')
    t0 = time.time()
    try:
        out = proc.communicate(timeout=240)[0]
        waited = time.time() - t0
        assert proc.returncode != 0, out
        assert 'vm' in out and ('timeout' in out or 'timed out' in out or 'failed' in out), out[-3000:]
        assert waited < 120, waited                   # without timeouts import-diff waits forever here
        assert not _pids('import-diff .*--pool %s ' % pools)
    finally:
        _inject_full(bed, 'none')
    assert bed.dst.snaps(pools, 'vm') == ['backup-a']
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert r['action'] == 'incremental' and r['base'] == 'backup-a'
    assert r['recovered'] is True                     # the partial writes were rolled back first
    assert_replicated(bed, pools, 'vm')
