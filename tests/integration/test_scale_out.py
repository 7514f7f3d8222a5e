"""Several hosts share one pool (issue #11): two source hosts and two backup hosts on the real clusters.

The test bed runs a second sshd for each cluster (source2 on NET.4, backup2 on NET.5: SRC2_HOST, DST2_HOST); this file
writes its own inventory with them. Runs go through ansible-runner, as AWX runs them, so the per-image
results (which host carried which image) come from the set_stats artifact.
"""

import copy
import json
import subprocess
import time

import ansible_runner
import yaml

from conftest import COLLECTIONS, random_data, role_vars

KiB, MiB = 1 << 10, 1 << 20
N_IMAGES = 40
SEND_TASK = 'Send what changed'


def _inventory(bed, tmp_path, name, source2=None):
    """The test bed's inventory plus a second source host and a second backup host (both backups serve the
    backup cluster; rbd_replicate_dest_host names the group)."""
    with open(bed.inventory) as f:
        inv = yaml.safe_load(f)
    children = inv['all']['children']
    children['ceph_source']['hosts']['source2'] = dict(ansible_host=source2 or bed.env['SRC2_HOST'])
    children['ceph_backup']['hosts']['backup2'] = dict(ansible_host=bed.env['DST2_HOST'])
    children['ceph_source']['vars']['rbd_replicate_dest_host'] = 'ceph_backup'
    path = tmp_path / name
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def _run(bed, tmp_path, inventory, extravars, tag, check=False):
    env = bed.ansible_env()
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_TIMEOUT='5')
    private = tmp_path / ('runner-' + tag)
    private.mkdir()
    r = ansible_runner.run(private_data_dir=str(private), playbook='ceph_rbd.backup.replicate',
                           inventory=inventory, extravars=extravars, envvars=env, quiet=True, timeout=900,
                           cmdline='--check' if check else None)
    events = list(r.events)
    stats = [e for e in events if e['event'] == 'playbook_on_stats'][0]['event_data']
    return r, events, (stats.get('artifact_data') or {}).get('rbd_replicate') or {}


def _carried(summary):
    """image -> the source host that carried it, from the per-host set_stats summaries."""
    out = {}
    for host, totals in summary.items():
        for entry in totals['per_image']:
            assert entry['host'] == host
            assert entry['image'] not in out, 'image %s carried twice' % entry['image']
            out[entry['image']] = host
    return out


def _transfer_hosts(events):
    """The backup hosts the transfer step ran on (delegated), per source host."""
    out = {}
    for e in events:
        d = e['event_data']
        if e['event'] == 'runner_on_ok' and d.get('task', '').startswith(SEND_TASK):
            out[d['host']] = d['res']['_ansible_delegated_vars']['ansible_host']
    return out


def _setup(bed, pool):
    for i in range(N_IMAGES):
        name = 'vm-%02d' % i
        bed.src.create(pool, name, 4 * MiB)
        bed.src.write(pool, name, (i % 4) * MiB, random_data(64 * KiB, seed=i))


def _first_night(bed, pools, tmp_path):
    """40 images replicated once by two source hosts: the inventory and who carried which image."""
    _setup(bed, pools)
    inventory = _inventory(bed, tmp_path, 'two.yml')
    r, _events, summary = _run(bed, tmp_path, inventory, role_vars(pools), 'night1')
    assert r.status == 'successful', r.stdout.read()[-4000:]
    return inventory, _carried(summary)


def test_two_source_and_two_backup_hosts_share_a_pool(bed, pools, tmp_path):
    _setup(bed, pools)
    inventory = _inventory(bed, tmp_path, 'two.yml')
    r, events, summary = _run(bed, tmp_path, inventory, role_vars(pools), 'night1')
    assert r.status == 'successful', r.stdout.read()[-4000:]
    carried = _carried(summary)
    # every image exactly once, by one of the two hosts, and both hosts carried a share
    assert sorted(carried) == ['vm-%02d' % i for i in range(N_IMAGES)]
    shares = dict((h, sorted(i for i, c in carried.items() if c == h)) for h in ('source', 'source2'))
    assert all(8 <= len(s) <= 32 for s in shares.values()), shares
    assert all(t['failed'] == 0 and t['orphaned'] == [] for t in summary.values()), summary
    # the streams went through both backup hosts
    assert sorted(_transfer_hosts(events).values()) == sorted([bed.env['DST_HOST'], bed.env['DST2_HOST']])
    # one run: every host joined the same lock with the same run id (nobody was refused), and released it
    cookies = {e['event_data']['res']['cookie'] for e in events
               if e['event'] == 'runner_on_ok' and e['event_data'].get('task', '').startswith('Take the replication lock')}
    assert len(cookies) == 1
    assert bed.src.run('--pool', pools, 'lock', 'info', 'ceph_rbd_backup.lock', 'replicate', '--format', 'json',
                       tool='rados', check=False).stdout.strip() in ('', '{}') or \
        not json.loads(bed.src.run('--pool', pools, 'lock', 'info', 'ceph_rbd_backup.lock', 'replicate',
                                   '--format', 'json', tool='rados').stdout).get('lockers')
    # byte-identical, and one snapshot name for the whole run
    snaps = set()
    for i in range(N_IMAGES):
        name = 'vm-%02d' % i
        snap = bed.src.snaps(pools, name)[-1]
        snaps.add(snap)
        assert bed.dst.snaps(pools, name) == [snap]
        assert bed.src.export_sha(pools, name, snap) == bed.dst.export_sha(pools, name, snap)
    assert len(snaps) == 1

    # the next night: the same shares (stable rule), incremental from the common base
    for i in range(0, N_IMAGES, 5):
        bed.src.write(pools, 'vm-%02d' % i, 2 * MiB, random_data(32 * KiB, seed=100 + i))
    # --check reports the whole pool, split the same way, and changes nothing
    before = dict((i, (bed.src.snaps(pools, 'vm-%02d' % i), bed.dst.snaps(pools, 'vm-%02d' % i))) for i in range(N_IMAGES))
    r, events, summary = _run(bed, tmp_path, inventory, role_vars(pools), 'check', check=True)
    assert r.status == 'successful', r.stdout.read()[-4000:]
    assert _carried(summary) == carried
    assert before == dict((i, (bed.src.snaps(pools, 'vm-%02d' % i), bed.dst.snaps(pools, 'vm-%02d' % i)))
                          for i in range(N_IMAGES))
    r, events, summary = _run(bed, tmp_path, inventory, role_vars(pools), 'night2')
    assert r.status == 'successful', r.stdout.read()[-4000:]
    assert _carried(summary) == carried
    entries = [e for t in summary.values() for e in t['per_image']]
    assert {e['action'] for e in entries} == {'incremental'}
    # only the 8 written images sent data; the others got their snapshot without a stream
    assert sorted(e['image'] for e in entries if not e.get('unchanged')) == ['vm-%02d' % i for i in range(0, N_IMAGES, 5)]


def test_a_second_run_is_refused_while_the_hosts_of_the_first_work(bed, pools, tmp_path):
    _setup(bed, pools)
    inventory = _inventory(bed, tmp_path, 'two.yml')
    env = bed.ansible_env()
    first = subprocess.Popen(['ansible-playbook', '-i', inventory, 'ceph_rbd.backup.replicate', '-e',
                              json.dumps(role_vars(pools, rbd_replicate_bwlimit='64k'))],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:           # wait until the first run holds the lock
            out = bed.src.run('--pool', pools, 'lock', 'info', 'ceph_rbd_backup.lock', 'replicate', '--format',
                              'json', tool='rados', check=False).stdout
            if out.strip() and json.loads(out).get('lockers'):
                break
            time.sleep(0.5)
        out = bed.playbook(extra=role_vars(pools), expect_rc=2)
        assert 'another replication run holds the lock on pool %s' % pools in out
        first_out = first.communicate(timeout=600)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_out[-4000:]
    for i in range(N_IMAGES):
        assert len(bed.dst.snaps(pools, 'vm-%02d' % i)) == 1


def test_an_unreachable_host_s_share_is_carried_by_the_other_and_continues_next_night(bed, pools, tmp_path):
    _setup(bed, pools)
    # night 1: source2 cannot be reached (nothing listens on 127.0.0.6): source carries every image
    down = _inventory(bed, tmp_path, 'down.yml', source2='127.0.0.6')
    r, events, summary = _run(bed, tmp_path, down, role_vars(pools), 'night1')
    stats = [e for e in events if e['event'] == 'playbook_on_stats'][0]['event_data']
    assert 'source2' in stats['dark'] and not stats['failures'], stats
    assert set(_carried(summary).values()) == {'source'} and len(_carried(summary)) == N_IMAGES
    assert summary['source']['failed'] == 0
    night1 = dict((e['image'], e['snapshot']) for e in summary['source']['per_image'])
    # night 2, both hosts up: each image continues from its common base (no full resync). The writes land
    # inside the 64 KiB written before: a write past the end of an object's data makes RADOS report the
    # whole gap as changed, and export-diff then sends those zeros.
    for i in range(N_IMAGES):
        bed.src.write(pools, 'vm-%02d' % i, (i % 4) * MiB + 16 * KiB, random_data(16 * KiB, seed=200 + i))
    up = _inventory(bed, tmp_path, 'up.yml')
    r, events, summary = _run(bed, tmp_path, up, role_vars(pools), 'night2')
    assert r.status == 'successful', r.stdout.read()[-4000:]
    carried = _carried(summary)
    assert len(carried) == N_IMAGES and set(carried.values()) == {'source', 'source2'}
    entries = [e for t in summary.values() for e in t['per_image']]
    assert {e['action'] for e in entries} == {'incremental'}
    assert all(e['base'] == night1[e['image']] for e in entries)
    # 16 KiB written per image: a full resync would send the 64 KiB of data of each image
    assert all(e['bytes'] < 48 * KiB for e in entries), [
        (e['image'], e['host'], e['base'], e['snapshot'], e['bytes']) for e in entries if e['bytes'] >= 48 * KiB]
    for i in range(N_IMAGES):
        name = 'vm-%02d' % i
        snap = bed.src.snaps(pools, name)[-1]
        assert bed.src.export_sha(pools, name, snap) == bed.dst.export_sha(pools, name, snap)


def test_adding_a_third_host_moves_about_a_third_of_the_images(bed, pools, tmp_path):
    two, before = _first_night(bed, pools, tmp_path)
    # a third source host (a third inventory name for the second sshd: hosts are told apart by name)
    with open(two) as f:
        inv = yaml.safe_load(f)
    three = copy.deepcopy(inv)
    three['all']['children']['ceph_source']['hosts']['source3'] = dict(ansible_host=bed.env['SRC2_HOST'])
    path = tmp_path / 'three.yml'
    path.write_text(yaml.safe_dump(three))
    r, _events, summary = _run(bed, tmp_path, str(path), role_vars(pools), 'three')
    assert r.status == 'successful'
    after = _carried(summary)
    moved = sorted(i for i in before if before[i] != after[i])
    assert all(after[i] == 'source3' for i in moved)            # only to the new host
    print('moved %d of %d images to the third host' % (len(moved), N_IMAGES))
    assert 5 <= len(moved) <= 22


def test_one_image_failing_on_one_host_does_not_stop_the_other_hosts_share(bed, pools, tmp_path):
    inventory, carried = _first_night(bed, pools, tmp_path)
    victim = sorted(i for i, h in carried.items() if h == 'source2')[0]
    bed.dst.write(pools, victim, 0, random_data(4 * KiB, seed=7))          # a foreign write on the backup
    for i in range(N_IMAGES):
        bed.src.write(pools, 'vm-%02d' % i, (i % 4) * MiB, random_data(4 * KiB, seed=300 + i))
    r, events, summary = _run(bed, tmp_path, inventory, role_vars(pools), 'night2')
    assert r.status == 'failed'
    assert summary['source2']['failed_images'] == ['%s/%s' % (pools, victim)]
    assert summary['source']['failed'] == 0 and summary['source2']['ok'] == summary['source2']['images'] - 1
    # every other image of both shares got its new snapshot
    for i in range(N_IMAGES):
        name = 'vm-%02d' % i
        assert len(bed.dst.snaps(pools, name)) == (1 if name == victim else 2), name
    fails = [e['event_data']['res']['msg'] for e in events
             if e['event'] == 'runner_on_failed' and e['event_data'].get('task') == 'Fail when any image failed']
    assert len(fails) == 1 and victim in fails[0]
