"""Consistent snapshots of a running "VM" (issue #14): freeze and thaw hooks around a group's snapshots.

A writer process keeps writing numbered records through librbd across the two disks of one VM: record n
goes to slot n of disk 0, then to slot n of disk 1 (as a database writes its data, then its log). It
pauses when the freeze hook asks (a control file; it acknowledges, like fsfreeze), and resumes on thaw.
With the hooks both disks' backup snapshots end at the same record; without them they can differ.
"""

import hashlib
import re
import struct
import subprocess
import time

import ansible_runner
import pytest

from conftest import role_vars

MiB = 1 << 20
SLOT = 4096
SLOTS = 16384                     # 64 MiB disks: minutes of records at ~100 a second
DISKS = ['vm-7-disk-0', 'vm-7-disk-1']

WRITER = r'''
import os, struct, sys, time, hashlib, rados, rbd
conf, keyring, pool, ctl = sys.argv[1:5]
disks = sys.argv[5:]
cluster = rados.Rados(conffile=conf, conf=dict(keyring=keyring))
cluster.connect()
ioctx = cluster.open_ioctx(pool)
images = [rbd.Image(ioctx, d) for d in disks]
n = 0
while not os.path.exists(os.path.join(ctl, 'stop')):
    if os.path.exists(os.path.join(ctl, 'freeze')):          # the guest agent froze the file systems
        open(os.path.join(ctl, 'frozen'), 'w').close()
        while os.path.exists(os.path.join(ctl, 'freeze')):
            time.sleep(0.01)
        os.unlink(os.path.join(ctl, 'frozen'))
        continue
    n += 1
    if n >= %(slots)d:
        break
    body = struct.pack('>Q', n) + os.urandom(%(slot)d - 8 - 32)
    record = body + hashlib.sha256(body).digest()
    for image in images:
        image.write(record, n * %(slot)d)
    with open(os.path.join(ctl, 'count.tmp'), 'w') as f:   # replaced whole: a reader never sees it empty
        f.write(str(n))
    os.replace(os.path.join(ctl, 'count.tmp'), os.path.join(ctl, 'count'))
    time.sleep(0.01)
for image in images:
    image.close()
ioctx.close()
cluster.shutdown()
''' % dict(slots=SLOTS, slot=SLOT)

# The freeze hook: ask the writer to pause and wait for its acknowledgement (like fsfreeze-freeze, which
# returns once the file systems are frozen); "hang" never returns (a guest agent that does not answer).
# The thaw hook: let it go on. Both append to ctl/hooks.log.
HOOK = r'''
import os, sys, time
what, ctl = sys.argv[1], sys.argv[2]
open(os.path.join(ctl, 'hooks.log'), 'a').write('%s %s\n' % (what, ' '.join(sys.argv[3:])))
if what in ('freeze', 'hang'):
    open(os.path.join(ctl, 'freeze'), 'w').close()
    deadline = time.time() + 20
    while not os.path.exists(os.path.join(ctl, 'frozen')) and time.time() < deadline:
        time.sleep(0.01)
    if what == 'hang':
        time.sleep(3600)
    sys.exit(0 if os.path.exists(os.path.join(ctl, 'frozen')) else 1)
if what == 'thaw':
    if os.path.exists(os.path.join(ctl, 'freeze')):
        os.unlink(os.path.join(ctl, 'freeze'))
'''


@pytest.fixture
def vm(bed, pools, tmp_path):
    """Two disks of VM 7 and the writer running on them; stopped at the end."""
    for d in DISKS:
        bed.src.create(pools, d, SLOTS * SLOT)
    ctl = tmp_path / 'ctl'
    ctl.mkdir()
    (tmp_path / 'writer.py').write_text(WRITER)
    (tmp_path / 'hook.py').write_text(HOOK)
    proc = subprocess.Popen(['/usr/bin/python3', str(tmp_path / 'writer.py'), bed.env['SRC_CONF'],
                             bed.env['SRC_KEYRING'], pools, str(ctl)] + DISKS)
    deadline = time.time() + 30
    while not (ctl / 'count').exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (ctl / 'count').exists(), 'the writer did not start'
    yield dict(ctl=ctl, hook=['/usr/bin/python3', str(tmp_path / 'hook.py')], proc=proc)
    (ctl / 'stop').touch()
    (ctl / 'freeze').unlink() if (ctl / 'freeze').exists() else None
    proc.wait(timeout=60)


def _last_record(cluster, pool, image, snap):
    """The number of the last record in the snapshot; fails on a torn record or a gap."""
    data = cluster.read(pool, image, 0, SLOTS * SLOT, snap=snap)
    last = 0
    for n in range(1, SLOTS):
        block = data[n * SLOT:(n + 1) * SLOT]
        if block == b'\0' * SLOT:
            break
        body, digest = block[:-32], block[-32:]
        assert hashlib.sha256(body).digest() == digest, 'torn record %d in %s@%s' % (n, image, snap)
        assert struct.unpack('>Q', body[:8])[0] == n
        last = n
    assert data[(last + 1) * SLOT:] == b'\0' * (len(data) - (last + 1) * SLOT), 'a gap after record %d' % last
    return last


def _groups(vm, **extra):
    return [dict(match=r'vm-(?P<vmid>\d+)-disk-\d+', freeze=vm['hook'] + ['freeze', str(vm['ctl']), '{vmid}'],
                 thaw=vm['hook'] + ['thaw', str(vm['ctl']), '{vmid}'], timeout=10, **extra)]


def _hooks_log(vm):
    path = vm['ctl'] / 'hooks.log'
    return path.read_text().splitlines() if path.exists() else []


def _count(vm):
    return int((vm['ctl'] / 'count').read_text() or 0)


def test_with_freeze_both_disks_backups_end_at_the_same_record(bed, pools, vm):
    extra = role_vars(pools, rbd_replicate_consistency_groups=_groups(vm))
    for night in range(2):
        time.sleep(1)
        bed.playbook(extra=extra)
        snap = bed.dst.snaps(pools, DISKS[0])[-1]
        assert bed.dst.snaps(pools, DISKS[1])[-1] == snap
        last = [_last_record(bed.dst, pools, d, snap) for d in DISKS]
        assert last[0] == last[1] > 0, (night, last)
    assert _hooks_log(vm) == ['freeze 7', 'thaw 7'] * 2
    before = _count(vm)
    time.sleep(0.5)
    assert _count(vm) > before, 'the writer did not resume after the thaw'


def test_without_freeze_the_disks_snapshots_can_differ(bed, pools, vm):
    """What the freeze prevents, and proof that _last_record sees it (so the test above can fail): without a
    group each disk is snapshotted on its own. Taken in one call the two snapshots may or may not straddle a
    record (CI once had five pairs in a row end at the same one, under load); a call apart they must."""
    before = _count(vm)
    for d in DISKS:
        bed.src_module('rbd_snapshot', dict(pool=pools, images=[d], snapshot='backup-apart'))
    last = [_last_record(bed.src, pools, d, 'backup-apart') for d in DISKS]
    assert _count(vm) > before, 'the writer stopped: the test proved nothing'
    assert last[1] > last[0] > 0, last           # disk 1 was snapshotted later: more records


def test_thaw_runs_when_the_freeze_times_out_and_the_snapshot_is_crash_consistent(bed, pools, vm):
    groups = _groups(vm)
    groups[0].update(freeze=vm['hook'] + ['hang', str(vm['ctl']), '{vmid}'], timeout=2)
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=DISKS, snapshot='backup-hang', groups=groups))
    assert {i['consistency'] for i in r['images']} == {'crash-consistent'}
    assert all('timed out after 2 s' in i['freeze_error'] for i in r['images'])
    # and the module warns, naming the group's images and the error (the warning is wrapped: compare without spaces)
    assert _squeezed('[WARNING]: images %s/%s, %s/%s: snapshot backup-hang is only crash-consistent - %s' % (
        pools, DISKS[0], pools, DISKS[1], r['images'][0]['freeze_error'])) in _squeezed(r['_warnings']), r['_warnings']
    assert _hooks_log(vm) == ['hang 7', 'thaw 7']
    before = _count(vm)
    time.sleep(0.5)
    assert _count(vm) > before, 'the writer did not resume after the thaw'


def _squeezed(text):
    return ''.join(text.split())


def test_the_nights_summary_artifact_and_a_warning_name_each_crash_consistent_image_with_the_error(
        bed, pools, vm, tmp_path):
    """The role run as AWX runs it (ansible-runner): a VM whose freeze hangs is still replicated and verified,
    and the summary line, the set_stats artifact and a warning say that its snapshots are only crash-consistent,
    and why."""
    groups = _groups(vm)
    groups[0].update(freeze=vm['hook'] + ['hang', str(vm['ctl']), '{vmid}'], timeout=2)
    (tmp_path / 'runner').mkdir()
    run = ansible_runner.run(private_data_dir=str(tmp_path / 'runner'), playbook='ceph_rbd.backup.replicate',
                             inventory=bed.inventory, extravars=role_vars(pools, rbd_replicate_consistency_groups=groups),
                             envvars=bed.ansible_env(), quiet=True, timeout=600)
    assert run.status == 'successful', run.stdout.read()[-3000:]
    events = list(run.events)
    labels = ['%s/%s' % (pools, d) for d in DISKS]
    error = r'freeze hook .*hook\.py hang .* failed \(rc=-9\): timed out after 2 s \(killed\)'
    # the summary: one line per image, verified, and only crash-consistent with the freeze's error
    report = [e['event_data']['res']['msg'] for e in events
              if e['event'] == 'runner_on_ok' and e['event_data'].get('task') == 'Show the summary'][0]
    for label in labels:
        assert [line for line in report if re.match(r'%s: initial .* verified - only crash-consistent: %s$'
                                                    % (re.escape(label), error), line)], report
    # the artifact: the images and the error, and per image its consistency
    artifact = [e for e in events if e['event'] == 'playbook_on_stats'][0]['event_data']['artifact_data']
    totals = artifact['rbd_replicate']['source']
    assert sorted(totals['crash_consistent']) == labels and totals['thaw_failed'] == {}, totals
    assert all(re.match(error, message) for message in totals['crash_consistent'].values()), totals
    assert {(i['image'], i['consistency']) for i in totals['per_image']} == {(d, 'crash-consistent') for d in DISKS}
    # a warning (AWX shows the job's [WARNING] lines): both images and the error
    warnings = [e['stdout'] for e in events if '[WARNING]' in e.get('stdout', '')]
    freeze_error = totals['crash_consistent'][labels[0]]
    expected = _squeezed('[WARNING]: images %s: snapshot %s is only crash-consistent - %s' % (
        ', '.join(labels), totals['per_image'][0]['snapshot'], freeze_error))
    assert [w for w in warnings if expected in _squeezed(w)], warnings
    assert _hooks_log(vm) == ['hang 7', 'thaw 7']


def test_thaw_runs_when_a_snapshot_fails(bed, pools, vm):
    bed.src.run('snap', 'create', '--pool', pools, '--image', DISKS[1], '--snap', 'pre')
    bed.src.run('snap', 'limit', 'set', '--pool', pools, '--image', DISKS[1], '--limit', '1')
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=DISKS, snapshot='backup-limited', groups=_groups(vm)),
                       expect_failed=True)
    assert r['failed_images'] == [DISKS[1]]
    assert _hooks_log(vm) == ['freeze 7', 'thaw 7']
    assert not (vm['ctl'] / 'freeze').exists()
