"""The nightly playbook run the way AWX/Tower runs it: through ansible-runner, read back as job events."""

import ansible_runner

from conftest import COLLECTIONS, random_data, role_vars

MiB = 1 << 20


def test_replicate_through_ansible_runner_gives_events_and_stats(bed, pools, tmp_path):
    bed.src.create(pools, 'vm-1', 4 * MiB)
    bed.src.create(pools, 'vm-2', 4 * MiB)
    bed.src.write(pools, 'vm-1', 0, random_data(MiB, seed=1))
    env = bed.ansible_env()
    env['ANSIBLE_COLLECTIONS_PATH'] = str(COLLECTIONS)

    def run(extravars):
        return ansible_runner.run(private_data_dir=str(tmp_path), playbook='ceph_rbd.backup.replicate',
                                  inventory=bed.inventory, extravars=extravars, envvars=env, quiet=True,
                                  timeout=600)

    r = run(role_vars(pools))
    assert r.status == 'successful' and r.rc == 0
    events = list(r.events)
    assert any(e['event'] == 'runner_on_ok' and e['event_data'].get('task', '').startswith('Send what changed')
               for e in events)
    stats = r.stats
    assert stats['ok'].get('source') and not stats['failures']
    # the set_stats summary AWX shows as the job's artifacts
    custom = [e for e in events if e['event'] == 'playbook_on_stats'][0]['event_data']['artifact_data']
    summary = custom['rbd_replicate']['source']
    assert (summary['images'], summary['ok'], summary['failed']) == (2, 2, 0)
    assert summary['bytes'] >= MiB and {i['image'] for i in summary['per_image']} == {'vm-1', 'vm-2'}

    # one image failing: the job fails, the summary names it, the other image still went through
    bed.dst.write(pools, 'vm-2', 0, random_data(4096, seed=2))
    bed.src.write(pools, 'vm-1', MiB, random_data(MiB, seed=3))
    r = run(role_vars(pools))
    assert r.status == 'failed'
    custom = [e for e in r.events if e['event'] == 'playbook_on_stats'][0]['event_data']['artifact_data']
    summary = custom['rbd_replicate']['source']
    assert summary['failed'] == 1 and summary['failed_images'] == ['%s/vm-2' % pools]
    assert len(bed.dst.snaps(pools, 'vm-1')) == 2
