# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.ceph_rbd.backup.plugins.filter import replication as F


def base_entry(image, pool='rbd', dest_pool=None, **kw):
    e = dict(image=image, pool=pool, dest_pool=dest_pool or pool, label='%s/%s' % (pool, image), action=None,
             base=None, snapshot=None, bytes=0, seconds=0.0, verified=None, removed_source=[], removed_dest=[],
             failed=False, errors=[])
    e.update(kw)
    return e


# -- verify_item / keep_item ---------------------------------------------------------------------

def test_verify_item_from_transfer_result():
    assert F.verify_item(dict(image='a', action='incremental', base='s1', snapshot='s2')) == \
        dict(image='a', snapshot='s2', from_snapshot='s1')
    for action in ('initial', 'rebuild', 'up_to_date'):
        assert F.verify_item(dict(image='a', action=action, base='s1', snapshot='s2')) == \
            dict(image='a', snapshot='s2', from_snapshot=None)


def test_verify_item_from_verify_result_prefers_from_snapshot():
    assert F.verify_item(dict(image='a', action='incremental', base='s0', snapshot='s2', from_snapshot='s1')) == \
        dict(image='a', snapshot='s2', from_snapshot='s1')
    assert F.verify_item(dict(image='a', snapshot='s2', from_snapshot=None, action='incremental', base='s1')) == \
        dict(image='a', snapshot='s2', from_snapshot=None)


def test_keep_item():
    r = dict(image='a', snapshot='s2', base='s1')
    assert F.keep_item(r) == dict(image='a', keep=['s2'])
    assert F.keep_item(r, check_mode=True) == dict(image='a', keep=['s2', 's1'])
    assert F.keep_item(dict(image='a', snapshot=None, base=None), check_mode=True) == dict(image='a', keep=[])
    assert F.keep_item(dict(image='a', snapshot=None, base='s1'), check_mode=True) == dict(image='a', keep=['s1'])


# -- replication_summary ---------------------------------------------------------------------------------

def full_steps():
    return {
        'list': {'names': ['a', 'b', 'c']},
        'snapshot': {'images': [dict(image='a', snapshot='s2'), dict(image='b', snapshot='s2'),
                                dict(image='c', snapshot='s2')]},
        'transfer': {'images': [
            dict(image='a', action='incremental', base='s1', snapshot='s2', bytes=100, data_bytes=90,
                 seconds=1.5, rate=66.7, ignored='x'),
            dict(image='b', failed=True, msg='ssh died'),
            dict(image='c', action='initial', base=None, snapshot='s2', bytes=50, seconds=0.25),
        ]},
        'verify_source': {'images': [dict(image='a', digest='d'), dict(image='c', digest='e')]},
        'verify_dest': {'images': [dict(image='a', match=True), dict(image='c', match=False)]},
        'prune_source': {'images': [dict(image='a', removed=['s0']), dict(image='c', removed=None)]},
        'prune_dest': {'skipped': True, 'images': [dict(image='a', removed=['zzz'])]},
    }


def test_replication_summary_merges_and_marks_failures():
    out = F.replication_summary(full_steps(), 'rbd', 'backup')
    assert [e['image'] for e in out] == ['a', 'b', 'c']
    assert out[0] == base_entry('a', dest_pool='backup', action='incremental', base='s1', snapshot='s2', bytes=100,
                                data_bytes=90, seconds=1.5, rate=66.7, verified=True, removed_source=['s0'])
    assert out[1] == base_entry('b', dest_pool='backup', snapshot='s2', failed=True,
                                errors=['transfer: ssh died'])
    assert out[2] == base_entry('c', dest_pool='backup', action='initial', snapshot='s2', bytes=50, seconds=0.25,
                                verified=False)
    # the skipped prune_dest changed nothing
    assert all(e['removed_dest'] == [] for e in out)


def test_replication_summary_image_only_in_later_step_is_added():
    steps = {'list': {'names': ['a']}, 'snapshot': {'images': [dict(image='z', snapshot='s')]}}
    out = F.replication_summary(steps, 'p')
    assert [e['image'] for e in out] == ['a', 'z'] and out[1]['snapshot'] == 's'
    assert out[0]['dest_pool'] == 'p' and out[1]['label'] == 'p/z'


def test_replication_summary_whole_task_failure_marks_every_image():
    steps = {'list': {'names': ['a', 'b']}, 'snapshot': {'failed': True, 'msg': 'no ssh'}}
    out = F.replication_summary(steps, 'rbd')
    assert [e['failed'] for e in out] == [True, True]
    assert [e['errors'] for e in out] == [['snapshot: no ssh'], ['snapshot: no ssh']]


def test_replication_summary_failed_task_with_images_only_marks_those():
    steps = {'list': {'names': ['a', 'b']},
             'transfer': {'failed': True, 'msg': 'partial', 'images': [dict(image='a', failed=True, msg='x'),
                                                                       dict(image='b', bytes=3)]}}
    out = F.replication_summary(steps, 'rbd')
    assert out[0]['failed'] and out[0]['errors'] == ['transfer: x']
    assert not out[1]['failed'] and out[1]['bytes'] == 3


def test_replication_summary_skipped_failed_step_is_ignored():
    steps = {'list': {'names': ['a']}, 'verify_dest': {'skipped': True, 'failed': True, 'msg': 'nope'}}
    out = F.replication_summary(steps, 'rbd')
    assert out == [base_entry('a')]


def test_replication_summary_empty():
    assert F.replication_summary({}, 'rbd') == []
    assert F.replication_summary({'list': None, 'snapshot': None}, 'rbd') == []


def test_replication_summary_multiple_step_failures_accumulate():
    steps = {'list': {'names': ['a']},
             'verify_source': {'images': [dict(image='a', failed=True, msg='m1')]},
             'prune_dest': {'images': [dict(image='a', failed=True, msg='m2')]}}
    out = F.replication_summary(steps, 'rbd')
    assert out[0]['errors'] == ['verify_source: m1', 'prune_dest: m2']


# -- replication_totals / report --------------------------------------------------------------------

def test_replication_totals():
    summary = F.replication_summary(full_steps(), 'rbd', 'backup')
    tot = F.replication_totals(summary)
    assert tot == dict(images=3, ok=2, failed=1, failed_images=['rbd/b'], orphaned=[], crash_consistent={},
                       thaw_failed={}, bytes=150, seconds=1.75, per_image=summary)
    assert F.replication_totals([]) == dict(images=0, ok=0, failed=0, failed_images=[], orphaned=[],
                                            crash_consistent={}, thaw_failed={}, bytes=0, seconds=0, per_image=[])


def test_replication_totals_rounding_and_none():
    s = [dict(label='p/a', bytes=None, seconds=0.1), dict(label='p/b', bytes=2, seconds=0.2, failed=False)]
    tot = F.replication_totals(s)
    assert tot['seconds'] == 0.3 and tot['bytes'] == 2 and tot['ok'] == 2


def test_replication_report_lines():
    summary = F.replication_summary(full_steps(), 'rbd', 'backup')
    assert F.replication_report(summary) == [
        'rbd/a: incremental s1..s2 100 bytes 1.5s verified pruned 1/0',
        'rbd/b: FAILED transfer: ssh died',
        'rbd/c: initial -..s2 50 bytes 0.2s NOT VERIFIED',
    ]


FREEZE = 'freeze hook qm guest cmd 7 fsfreeze-freeze failed (rc=-9): timed out after 2 s (killed)'
THAW = 'thaw hook qm guest cmd 8 fsfreeze-thaw failed (rc=1): no agent'


def hook_steps():
    """A night with a VM whose freeze timed out (vm-7, two disks), one whose thaw failed (vm-8) and one that froze
    (vm-9); vm-7-disk-1's transfer failed."""
    crash = dict(consistency='crash-consistent', group='spec0:7', freeze_error=FREEZE)
    return {
        'snapshot': {'names': ['vm-7-disk-0', 'vm-7-disk-1', 'vm-8-disk-0', 'vm-9-disk-0'], 'images': [
            dict(crash, image='vm-7-disk-0', snapshot='s2'), dict(crash, image='vm-7-disk-1', snapshot='s2'),
            dict(image='vm-8-disk-0', snapshot='s2', consistency='frozen', thaw_error=THAW),
            dict(image='vm-9-disk-0', snapshot='s2', consistency='frozen')]},
        'transfer': {'images': [
            dict(image='vm-7-disk-0', action='incremental', base='s1', snapshot='s2', bytes=10, seconds=1.0),
            dict(image='vm-7-disk-1', failed=True, msg='ssh died'),
            dict(image='vm-8-disk-0', action='incremental', base='s1', snapshot='s2', bytes=10, seconds=1.0),
            dict(image='vm-9-disk-0', action='incremental', base='s1', snapshot='s2', bytes=10, seconds=1.0)]},
        'verify_dest': {'images': [dict(image='vm-7-disk-0', match=True), dict(image='vm-8-disk-0', match=True),
                                   dict(image='vm-9-disk-0', match=True)]},
    }


def test_the_summary_carries_how_consistent_each_snapshot_is_and_the_hooks_errors():
    summary = dict((s['image'], s) for s in F.replication_summary(hook_steps(), 'rbd'))
    assert summary['vm-7-disk-0']['consistency'] == 'crash-consistent'
    assert summary['vm-7-disk-0']['freeze_error'] == FREEZE and summary['vm-7-disk-1']['freeze_error'] == FREEZE
    assert summary['vm-8-disk-0']['thaw_error'] == THAW and 'freeze_error' not in summary['vm-8-disk-0']
    assert summary['vm-9-disk-0']['consistency'] == 'frozen'
    assert not set(summary['vm-9-disk-0']) & {'freeze_error', 'thaw_error'}
    assert 'consistency' not in F.replication_summary(full_steps(), 'rbd')[0]      # no groups, no key


def test_the_report_names_a_crash_consistent_snapshot_and_a_failed_thaw_with_the_error():
    assert F.replication_report(F.replication_summary(hook_steps(), 'rbd')) == [
        'rbd/vm-7-disk-0: incremental s1..s2 10 bytes 1.0s verified - only crash-consistent: ' + FREEZE,
        'rbd/vm-7-disk-1: FAILED transfer: ssh died - only crash-consistent: ' + FREEZE,
        'rbd/vm-8-disk-0: incremental s1..s2 10 bytes 1.0s verified - %s (the guest may still be frozen)' % THAW,
        'rbd/vm-9-disk-0: incremental s1..s2 10 bytes 1.0s verified',
    ]


def test_the_artifact_names_every_crash_consistent_image_and_every_failed_thaw_with_the_error():
    totals = F.replication_totals(F.replication_summary(hook_steps(), 'rbd'))
    assert totals['crash_consistent'] == {'rbd/vm-7-disk-0': FREEZE, 'rbd/vm-7-disk-1': FREEZE}
    assert totals['thaw_failed'] == {'rbd/vm-8-disk-0': THAW}
    assert totals['failed_images'] == ['rbd/vm-7-disk-1']


def test_filter_module_exports():
    f = F.FilterModule().filters()
    assert set(f) == {'replication_summary', 'replication_totals', 'replication_report', 'verify_item',
                      'keep_item', 'retention_error', 'scrub_items', 'transfer_item', 'images_to_verify',
                      'remote_of', 'pool_sides', 'prune_items', 'dest_hosts', 'share_members',
                      'hook_groups', 'range_problems'}
    assert f['keep_item'] is F.keep_item


def test_orphaned_images_are_reported_not_failed():
    steps = dict(list=dict(names=['a']), dest_list=dict(names=['a', 'gone', 'a.replaced-20261126T000000Z',
                                                               'b.rebuilding']))
    out = F.replication_summary(steps, 'rbd')
    assert [(s['image'], s['action'], s['failed']) for s in out] == [('a', None, False), ('gone', 'orphaned', False)]
    assert F.replication_totals(out)['orphaned'] == ['rbd/gone']
    assert F.replication_report(out)[1].startswith('rbd/gone: orphaned')


def test_retention_error():
    assert F.retention_error(dict(last=2)) == ''
    assert 'must not be negative' in F.retention_error(dict(last=-1))
    assert 'unknown retention rule' in F.retention_error(dict(dayly=1))


@pytest.mark.parametrize('variables, problems', [
    (dict(rbd_replicate_timeout=300, rbd_replicate_parallel=32, rbd_replicate_streams=4,
          rbd_replicate_compression_level=3, rbd_replicate_bwlimit='', rbd_replicate_lock_ttl=21600,
          rbd_replicate_ssh_port=0, rbd_replicate_consistency_groups=[]), []),        # the role's defaults
    (dict(rbd_replicate_streams=0), ['rbd_replicate_streams must be a whole number, from 1 to 64; got 0']),
    (dict(rbd_replicate_timeout='0'), ["rbd_replicate_timeout must be a whole number of seconds, from 1 to 86400; "
                                       "got '0'"]),
    (dict(rbd_replicate_bwlimit='0'), ["rbd_replicate_bwlimit must be bytes per second (like 50M), at least 1; "
                                       "got '0'"]),
    (dict(rbd_replicate_consistency_groups=[dict(match='x'), dict(match='y', timeout=0)]),
     ['rbd_replicate_consistency_groups[1].timeout must be a whole number of seconds, from 1 to 3600; got 0']),
    (dict(timeout=0), []),                       # a module's option is not a role variable
    (None, []),
])
def test_range_problems_names_each_role_variable_out_of_its_range(variables, problems):
    assert F.range_problems(variables) == problems


def test_scrub_items_picks_common_snapshots_and_samples_evenly():
    def snaps(*names):
        return [dict(name=n) for n in names]

    backups = [dict(image='img%d' % i, snapshots=snaps('backup-1', 'backup-2', 'other')) for i in range(10)]
    backups.append(dict(image='orphan', snapshots=snaps('backup-1')))
    sources = [dict(image='img%d' % i, snapshots=snaps('backup-2', 'backup-3', 'other')) for i in range(10)]
    items = F.scrub_items(backups, sources, 'oldest')
    assert len(items) == 10 and items[0] == dict(image='img0', snapshot='backup-2')
    assert F.scrub_items(backups, sources, 'newest')[0]['snapshot'] == 'backup-2'
    sample = F.scrub_items(backups, sources, 'oldest', 3)
    assert [i['image'] for i in sample] == ['img0', 'img3', 'img6']


def test_transfer_item_carries_the_snapshot_steps_hints():
    snaps = [dict(id=3, name='backup-1', size=4096), dict(id=5, name='backup-2', size=4096)]
    r = dict(image='a', changed=True, snapshot='backup-2', snapshots=snaps, previous='backup-1', unchanged=True,
             failed=False)
    assert F.transfer_item(r) == dict(image='a', snapshot='backup-2', source_snapshots=snaps,
                                      previous='backup-1', unchanged=True)
    # on an image's first night the object size comes along (the destination image is created with it)
    assert F.transfer_item(dict(r, previous=None, unchanged=None, object_size=1 << 22))['object_size'] == 1 << 22
    # a result without hints (older module, state=absent) gives a plain item: the transfer asks the source
    assert F.transfer_item(dict(image='b', snapshot='backup-2')) == dict(image='b', snapshot='backup-2')


def test_report_says_unchanged_when_nothing_was_verified_because_nothing_was_sent():
    steps = dict(list=dict(names=['a']),
                 transfer=dict(images=[dict(image='a', action='incremental', base='s1', snapshot='s2', bytes=0,
                                            seconds=0.1, unchanged=True)]))
    summary = F.replication_summary(steps, 'rbd')
    assert summary[0]['unchanged'] is True
    assert F.replication_report(summary) == ['rbd/a: incremental s1..s2 0 bytes 0.1s unchanged']


# -- images_to_verify ----------------------------------------------------------------------------
_XFER = [
    dict(image='new', action='initial', base=None, snapshot='s2'),
    dict(image='changed', action='incremental', base='s1', snapshot='s2'),
    dict(image='quiet', action='incremental', base='s1', snapshot='s2', unchanged=True),
    dict(image='again', action='up_to_date', base='s2', snapshot='s2'),
    dict(image='rebuilt', action='rebuild', base=None, snapshot='s2'),
    dict(image='broken', failed=True, msg='boom'),
]


@pytest.mark.parametrize('method, expected', [
    ('full', ['new', 'changed', 'quiet', 'again', 'rebuilt']),   # full means every image's new snapshot
    ('data', ['new', 'changed', 'rebuilt']),                     # only what a stream carried
    ('extents', ['new', 'changed', 'rebuilt']),
    ('none', []),
])
def test_images_to_verify(method, expected):
    assert [r['image'] for r in F.images_to_verify(_XFER, method)] == expected


def test_images_to_verify_skips_results_without_a_snapshot():
    # a check-mode or failed-before-snapshot result has no snapshot to verify
    assert F.images_to_verify([dict(image='a', action='initial', snapshot=None)], 'full') == []
    assert F.images_to_verify(None, 'full') == []


# -- remote_of / pool_sides / prune_items: how the role names both sides ------------------------------------
def test_remote_of_takes_the_inventory_unless_overridden():
    hv = dict(ansible_host='10.0.0.11', ansible_user='root', ansible_port=2222)
    assert F.remote_of('src-1', hv) == dict(host='10.0.0.11', user='root', port=2222)
    ssh = dict(host='', user='backup', port='0', key='/k', options=['-o', 'X=y'], cipher='aes128-gcm@openssh.com')
    assert F.remote_of('src-1', hv, ssh, dict(user='backup-ro', conf='')) == dict(
        host='10.0.0.11', user='backup', port=2222, key='/k', options=['-o', 'X=y'],
        cipher='aes128-gcm@openssh.com', ceph=dict(user='backup-ro'))
    assert F.remote_of('src-1', {}) == dict(host='src-1')          # no ansible_host: the inventory name


@pytest.mark.parametrize('helpers, out', [(True, None), ('True', None), ('', None), (None, None),
                                          (False, False), ('false', False), ('False', False), ('no', False)])
def test_remote_of_says_helpers_only_when_they_are_off(helpers, out):
    r = F.remote_of('src-1', {}, dict(helpers=helpers, cipher='c'))
    assert r.get('helpers', None) is out and r['cipher'] == 'c' and r['host'] == 'src-1'


SETTINGS = dict(transport='pull', dest_host='bak-1', source_ceph=dict(conf='/s.conf'), dest_ceph=dict(conf='/d.conf'),
                remote_ceph={}, verify='data', verify_source='stream', ssh=dict(cipher='c'))
HOSTVARS = {'src-1': dict(ansible_host='10.0.0.11'), 'bak-1': dict(ansible_host='10.0.1.11', ansible_user='root')}


def test_pool_sides_pull():
    s = F.pool_sides(dict(pool='rbd', dest_pool='rbd-backup', namespace='t1'), SETTINGS, HOSTVARS, 'src-1')
    assert (s['src_pool'], s['src_ns'], s['dst_pool'], s['dst_ns']) == ('rbd', 't1', 'rbd-backup', 't1')
    assert s['transfer_host'] == 'bak-1' and s['local_ceph'] == dict(conf='/d.conf')
    assert s['remote'] == dict(host='10.0.0.11', cipher='c', ceph=dict(conf='/s.conf'))
    assert s['in_stream'] is True and s['digest'] == 'data' and s['hold'] == 'bak-1/rbd-backup/t1'


def test_pool_sides_push_and_overrides():
    settings = dict(SETTINGS, transport='push', remote_ceph=dict(user='ro'), verify='full')
    s = F.pool_sides(dict(pool='rbd'), settings, HOSTVARS, 'src-1')
    assert s['transfer_host'] == 'src-1' and s['local_ceph'] == dict(conf='/s.conf')
    assert s['remote'] == dict(host='10.0.1.11', user='root', cipher='c', ceph=dict(user='ro'))
    assert (s['dst_pool'], s['dst_ns'], s['hold']) == ('rbd', None, 'bak-1/rbd')
    assert s['in_stream'] is False and s['digest'] == 'none'     # full reads both sides


def test_pool_sides_direct_runs_on_the_backup_host_with_the_source_cluster_and_no_ssh():
    settings = dict(SETTINGS, transport='direct', remote_ceph=dict(user='ignored'),
                    direct_ceph=dict(conf='/etc/ceph/src.conf', user='direct-ro', keyring='/k', cluster=''))
    s = F.pool_sides(dict(pool='rbd', dest_pool='rbd-backup'), settings, HOSTVARS, 'src-1')
    assert s['direct'] is True and s['pull'] is False
    assert s['transfer_host'] == 'bak-1' and s['dest_host'] == 'bak-1'
    assert s['local_ceph'] == dict(conf='/d.conf')                    # the destination cluster, as in pull
    assert s['direct_ceph'] == dict(conf='/etc/ceph/src.conf', user='direct-ro', keyring='/k')   # empty keys left out
    assert s['remote'] == {}                                          # no other host: no ssh in the data path
    assert s['in_stream'] is True and s['digest'] == 'data' and s['hold'] == 'bak-1/rbd-backup'


def test_pool_sides_direct_only_in_direct_mode():
    settings = dict(SETTINGS, direct_ceph=dict(conf='/etc/ceph/src.conf'))
    s = F.pool_sides(dict(pool='rbd'), settings, HOSTVARS, 'src-1')
    assert s['direct'] is False and s['direct_ceph'] == {} and s['remote']['host'] == '10.0.0.11'
    # several backup hosts: direct spreads the members like pull does
    settings = dict(SETTINGS, transport='direct', dest_host=['bak-1', 'bak-2'], direct_ceph=dict(conf='/s'))
    hostvars = dict(HOSTVARS, **{'src-2': {}, 'bak-2': {}})
    assert [F.pool_sides(dict(pool='rbd'), settings, hostvars, h, ['src-1', 'src-2'])['transfer_host']
            for h in ('src-1', 'src-2')] == ['bak-1', 'bak-2']


def test_prune_items_keep_what_the_transfer_says():
    results = [dict(image='a', action='incremental', base='s1', snapshot='s2', keep=['s2']),
               dict(image='b', action='initial', base=None, snapshot='s2', keep=['s2']),
               dict(image='c', failed=True),
               dict(image='d', action='incremental', base='s1', snapshot='s2')]          # no keep: old results
    assert F.prune_items(results) == [dict(image='a', keep=['s2']), dict(image='b', keep=['s2']),
                                      dict(image='d', keep=['s2'])]
    # in check mode an image that would be created has nothing to prune on the destination yet
    assert [i['image'] for i in F.prune_items(results, 'dest', True)] == ['a', 'd']
    assert F.prune_items(results, 'dest', True)[1]['keep'] == ['s2', 's1']


# -- several hosts share a pool (#11) ----------------------------------------------------------------------
def test_dest_hosts_takes_a_host_a_list_or_a_group():
    groups = dict(ceph_backup=['bak-1', 'bak-2'])
    assert F.dest_hosts('bak-1', groups) == ['bak-1']
    assert F.dest_hosts(['bak-2', 'bak-1'], groups) == ['bak-2', 'bak-1']
    assert F.dest_hosts('ceph_backup', groups) == ['bak-1', 'bak-2']


def _lock(fsid, pool='rbd'):
    return dict(_rbd_replicate_lock=dict(fsid=fsid, pool=pool))


def test_share_members_are_the_play_hosts_on_the_same_cluster_and_pool():
    lock = _lock
    hostvars = {'src-1': lock('f1'), 'src-2': lock('f1'), 'src-3': lock('f2'), 'src-4': lock('f1', 'other'),
                'src-5': {}, 'src-6': lock('f1')}
    play_hosts = ['src-2', 'src-1', 'src-3', 'src-4', 'src-5']          # src-6 failed or is unreachable
    assert F.share_members(hostvars['src-1']['_rbd_replicate_lock'], hostvars, play_hosts) == ['src-1', 'src-2']
    assert F.share_members(dict(pool='rbd'), hostvars, play_hosts) == []  # no fsid (older module): no sharing


def test_pool_sides_spreads_the_members_over_several_backup_hosts():
    settings = dict(SETTINGS, dest_host=['bak-1', 'bak-2'])
    hostvars = dict(HOSTVARS, **{'src-2': {}, 'src-3': {}, 'bak-2': {}})
    sides = [F.pool_sides(dict(pool='rbd'), settings, hostvars, h, ['src-3', 'src-1', 'src-2'])
             for h in ('src-1', 'src-2', 'src-3')]
    assert [s['transfer_host'] for s in sides] == ['bak-1', 'bak-2', 'bak-1']
    assert [s['dest_host'] for s in sides] == ['bak-1', 'bak-2', 'bak-1']
    # the hold key names the destination by its first backup host, whichever host carried the image
    assert {s['hold'] for s in sides} == {'bak-1/rbd'}
    # alone (no members, or one): the first backup host, as with a single one
    assert F.pool_sides(dict(pool='rbd'), settings, hostvars, 'src-2')['dest_host'] == 'bak-1'


def test_summary_names_the_host_and_only_one_host_reports_orphans():
    steps = dict(snapshot=dict(names=['a'], listed=['a', 'b'], images=[dict(image='a', snapshot='s')]),
                 dest_list=dict(names=['a', 'b', 'gone']))
    mine = F.replication_summary(steps, 'rbd', host='src-1')
    assert [(e['image'], e['host'], e['action']) for e in mine] == [('a', 'src-1', None), ('gone', 'src-1', 'orphaned')]
    assert [e['image'] for e in F.replication_summary(steps, 'rbd', host='src-2', orphans=False)] == ['a']


def test_hook_groups_reach_a_named_host_like_the_role_reaches_the_others():
    specs = [dict(match='vm-(?P<vmid>[0-9]+)-disk-[0-9]+', freeze=['f', '{vmid}'], thaw=['t'], host='pve-1', timeout=9),
             dict(rbd_group='db', freeze=['f'])]
    hostvars = {'pve-1': dict(ansible_host='10.0.2.1', ansible_user='root', ansible_port=2200)}
    out = F.hook_groups(specs, hostvars, dict(options=['-o', 'X=y'], cipher='c', helpers=False))
    assert out[0] == dict(match=specs[0]['match'], freeze=['f', '{vmid}'], thaw=['t'], timeout=9,
                          remote=dict(host='10.0.2.1', user='root', port=2200, options=['-o', 'X=y']))
    assert out[1] == dict(rbd_group='db', freeze=['f'])
    assert F.hook_groups([]) == []
