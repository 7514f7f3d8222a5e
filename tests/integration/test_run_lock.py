"""A run that outlasts its lock's ttl keeps the lock; an import that still writes is never touched by another
run; a killed run's lock and mark are recovered. On the two real clusters, through the role."""

import json
import os
import signal
import subprocess
import time

from conftest import random_data, role_vars
from test_faults import _pids
from test_replicate import assert_replicated

MiB = 1 << 20
MARK = 'ceph_rbd_backup.importing'


def _start(bed, extra):
    return subprocess.Popen(['ansible-playbook', '-i', bed.inventory, 'ceph_rbd.backup.replicate',
                             '-e', json.dumps(extra)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=bed.ansible_env(), text=True)


def _wait_for_import(pools, timeout=90):
    pattern = 'rbd .*import-diff .*--pool %s ' % pools
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = _pids(pattern)
        if pids:
            return pids
        time.sleep(0.2)
    raise AssertionError('the import never started')


def _lock_info(bed, pools):
    out = bed.src.run('--pool', pools, '--format', 'json', 'lock', 'info', 'ceph_rbd_backup.lock', 'replicate',
                      tool='rados').stdout
    return json.loads(out)


def test_a_run_keeps_its_lock_past_the_ttl_and_no_run_touches_a_live_import(bed, pools):
    bed.src.create(pools, 'vm', 128 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(48 * MiB, seed=1))
    # ~48 s of stream at 1 MiB/s against a 4 s ttl: the run outlives its ttl many times, and the checks below
    # (~25 s under CI's load with three workers; 24 s of stream at 2 MiB/s once was not enough) end before it does
    first = _start(bed, role_vars(pools, rbd_replicate_lock_ttl=4, rbd_replicate_bwlimit='1m'))
    importing = _wait_for_import(pools)
    started = time.time()
    mark = json.loads(bed.dst.meta(pools, 'vm')[MARK])
    time.sleep(6)
    held = _lock_info(bed, pools)
    assert held['type'] == 'shared' and held['lockers'], held          # renewed: still held after 1.5 ttls
    run = held['tag']
    assert mark['run'] == run and mark['snapshot'] == bed.src.snaps(pools, 'vm')[-1]
    # a transfer of another run (as after the lock had been broken or lost) finds the live run's mark and
    # the import's watch, waits, and leaves the image alone, naming the run that writes
    args = dict(source_pool=pools, images=['vm'], live_import_wait=3,
                run_lock=dict(pool=pools, run='intruder', renew=False))
    args.update(bed.pull_args())
    r = bed.dst_module('rbd_diff_transfer', args, expect_failed=True)
    assert 'an import into this image by run %s' % run in r['msg'] and 'still writing' in r['msg'], r['msg']
    # a second run meanwhile is refused, naming the first run
    second = bed.playbook(extra=role_vars(pools, rbd_replicate_lock_ttl=4), expect_rc=2)
    assert 'another replication run holds the lock on pool %s: run %s' % (pools, run) in second, second[-3000:]
    assert set(importing) & set(_pids('rbd .*import-diff .*--pool %s ' % pools)), \
        'the first run finished too early (checks took %.1f s): the test proved nothing (make its stream longer)' \
        % (time.time() - started)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out[-4000:]
    assert 'could not be renewed' not in out, out[-4000:]
    assert_replicated(bed, pools, 'vm')
    assert MARK not in bed.dst.meta(pools, 'vm')
    assert _lock_info(bed, pools)['lockers'] == []                       # released at the end


def test_a_killed_runs_lock_expires_and_its_mark_is_recovered(bed, pools):
    bed.src.create(pools, 'vm', 64 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(4 * MiB, seed=2))
    bed.playbook(extra=role_vars(pools))
    bed.src.write(pools, 'vm', 8 * MiB, random_data(16 * MiB, seed=3))
    killed = _start(bed, role_vars(pools, rbd_replicate_lock_ttl=4, rbd_replicate_bwlimit='2m'))
    victims = _wait_for_import(pools)
    time.sleep(2)                                    # some data lands
    killed.send_signal(signal.SIGKILL)               # the controller dies ...
    for pid in victims:                              # ... and so does its import on the backup host
        os.kill(pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    assert json.loads(bed.dst.meta(pools, 'vm')[MARK])['run']
    # its lock ends ttl seconds after its last renewal
    deadline = time.time() + 30
    while _lock_info(bed, pools)['lockers'] and time.time() < deadline:
        time.sleep(1)
    assert _lock_info(bed, pools)['lockers'] == []
    # the next run takes the lock, waits out the dead import's watch, rolls its partial writes back and completes
    out = bed.playbook(extra=role_vars(pools))
    assert '/vm: incremental' in out, out[-3000:]
    assert MARK not in bed.dst.meta(pools, 'vm')
    common = assert_replicated(bed, pools, 'vm')
    assert common[-1] == bed.src.snaps(pools, 'vm')[-1]
