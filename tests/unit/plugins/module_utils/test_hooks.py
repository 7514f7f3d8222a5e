"""Consistency groups and freeze/thaw hooks (issue #14): the grouping and argv are pure; run_group runs
real local commands (true, false, sleep, and a script that records its calls)."""

import os
import sys

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _hooks

VM = dict(match=r'vm-(?P<vmid>\d+)-disk-\d+', freeze=['fsfreeze', '{vmid}'], thaw=['thaw', '{vmid}'])


def test_images_with_equal_captures_form_one_group_in_order():
    names = ['vm-101-disk-0', 'other', 'vm-102-disk-0', 'vm-101-disk-1', 'db-log']
    groups = _hooks.group_images(names, [VM])
    assert [(g.key, g.images) for g in groups] == [
        ('spec0:101', ['vm-101-disk-0', 'vm-101-disk-1']), ('image:other', ['other']),
        ('spec0:102', ['vm-102-disk-0']), ('image:db-log', ['db-log'])]
    assert groups[0].values == dict(vmid='101', group='101') and groups[1].spec is None


def test_rbd_groups_and_the_first_matching_spec_win():
    specs = [dict(rbd_group='pg'), dict(match='(db)-.*'), VM]
    groups = _hooks.group_images(['db-data', 'db-log', 'vm-7-disk-0', 'vm-8-disk-0'], specs,
                                 dict(pg=['vm-8-disk-0', 'db-log']))
    assert [(g.key, g.images) for g in groups] == [
        ('spec1:db', ['db-data']), ('rbd_group:pg', ['db-log', 'vm-8-disk-0']), ('spec2:7', ['vm-7-disk-0'])]
    assert groups[0].values == {'1': 'db', 'group': 'db'}


@pytest.mark.parametrize('spec,problem', [
    (dict(match='x', rbd_group='g'), 'exactly one of match and rbd_group'),
    (dict(), 'exactly one of match and rbd_group'),
    (dict(match='vm-(?P<id>'), 'is not a regular expression'),
    (dict(match=r'vm-(?P<vmid>\d+)', freeze=['qm', '{vm}']), 'names {vm}, but only {group}, {vmid} can be filled in'),
    (dict(rbd_group='g', thaw=['x', '{vmid}']), 'names {vmid}'),
    (dict(match='x', freeze=['{'], thaw=[]), 'freeze'),
])
def test_spec_problems_are_found_before_anything_runs(spec, problem):
    assert problem in (_hooks.spec_problem(spec) or '')


def test_a_valid_spec_has_no_problem():
    assert _hooks.spec_problem(VM) is None and _hooks.spec_problem(dict(rbd_group='g', freeze=['f', '{group}'])) is None


def test_hook_words_are_filled_in_one_by_one_and_quoted_for_ssh():
    values = dict(vmid="1; rm -rf /", group='g')
    assert _hooks.hook_argv(['qm', 'guest', 'cmd', '{vmid}', 'fsfreeze-freeze'], values) == [
        'qm', 'guest', 'cmd', '1; rm -rf /', 'fsfreeze-freeze']
    argv = _hooks.hook_argv(['qm', '{vmid}'], values, dict(host='pve-1', user='root', port=22))
    assert argv[0] == 'ssh' and argv[-2:] == ['pve-1', "qm '1; rm -rf /'"]


def _recorder(tmp_path, name, rc=0, sleep=0):
    """A hook that appends its name and arguments to tmp_path/log, then sleeps and exits with rc."""
    script = tmp_path / name
    script.write_text('import sys, time\nopen(%r, "a").write(" ".join(sys.argv[1:]) + "\\n")\ntime.sleep(%s)\n'
                      'sys.exit(%d)\n' % (str(tmp_path / 'log'), sleep, rc))
    return [sys.executable, str(script)]


def _group(tmp_path, freeze, thaw, **spec):
    spec = dict(VM, freeze=freeze + ['freeze', '{vmid}'], thaw=thaw + ['thaw', '{vmid}'], **spec)
    return _hooks.group_images(['vm-5-disk-0', 'vm-5-disk-1'], [spec])[0]


def _log(tmp_path):
    return (tmp_path / 'log').read_text().splitlines()


def test_freeze_snapshot_thaw_in_order(tmp_path):
    g = _group(tmp_path, _recorder(tmp_path, 'f.py'), _recorder(tmp_path, 't.py'))

    def work(image):
        with open(str(tmp_path / 'log'), 'a') as f:
            f.write('snap %s\n' % image)
        return dict(image=image)

    out = _hooks.run_group(g, work)
    log = _log(tmp_path)
    assert log[0] == 'freeze 5' and log[-1] == 'thaw 5' and sorted(log[1:3]) == ['snap vm-5-disk-0', 'snap vm-5-disk-1']
    assert [(i, r['consistency'], r['group_images']) for i, r, e in out] == [
        ('vm-5-disk-0', 'frozen', ['vm-5-disk-0', 'vm-5-disk-1']), ('vm-5-disk-1', 'frozen', ['vm-5-disk-0', 'vm-5-disk-1'])]


def test_thaw_runs_when_a_snapshot_fails(tmp_path):
    g = _group(tmp_path, _recorder(tmp_path, 'f.py'), _recorder(tmp_path, 't.py'))

    def work(image):
        if image.endswith('1'):
            raise RuntimeError('snap create failed')
        return dict(image=image)

    out = _hooks.run_group(g, work)
    assert _log(tmp_path)[-1] == 'thaw 5'
    assert [e is None for _i, _r, e in out] == [True, False]


def test_a_timed_out_freeze_is_killed_reported_and_the_images_are_still_snapshotted_then_thawed(tmp_path):
    g = _group(tmp_path, _recorder(tmp_path, 'f.py', sleep=30), _recorder(tmp_path, 't.py'), timeout=1)
    out = _hooks.run_group(g, lambda image: dict(image=image))
    assert _log(tmp_path) == ['freeze 5', 'thaw 5']
    for _i, r, e in out:
        assert e is None and r['consistency'] == 'crash-consistent' and 'timed out after 1 s' in r['freeze_error']


def test_skip_on_freeze_failure_takes_no_snapshot_but_still_thaws(tmp_path):
    g = _group(tmp_path, _recorder(tmp_path, 'f.py', rc=3), _recorder(tmp_path, 't.py'), on_freeze_failure='skip')
    calls = []
    out = _hooks.run_group(g, calls.append)
    assert calls == [] and _log(tmp_path) == ['freeze 5', 'thaw 5']
    assert all('rc=3' in str(e) and 'on_freeze_failure=skip' in str(e) for _i, _r, e in out)


def test_a_failed_thaw_is_reported_on_each_image(tmp_path):
    g = _group(tmp_path, _recorder(tmp_path, 'f.py'), _recorder(tmp_path, 't.py', rc=1))
    out = _hooks.run_group(g, lambda image: dict(image=image))
    assert all(r['consistency'] == 'frozen' and 'thaw hook' in r['thaw_error'] for _i, r, _e in out)


@pytest.mark.parametrize('results, warnings', [
    ([], []),
    ([dict(image='a', snapshot='s', consistency='frozen'), None], []),
    ([dict(image='vm-7-disk-0', snapshot='s', group='spec0:7', freeze_error='freeze hook x failed (rc=1): no'),
      None,                                                             # an image whose snapshot failed
      dict(image='vm-7-disk-1', snapshot='s', group='spec0:7', freeze_error='freeze hook x failed (rc=1): no'),
      dict(image='vm-8-disk-0', snapshot='s', group='spec0:8', thaw_error='thaw hook y failed (rc=2): gone')],
     ['images p/vm-7-disk-0, p/vm-7-disk-1: snapshot s is only crash-consistent - freeze hook x failed (rc=1): no',
      'image p/vm-8-disk-0: thaw hook y failed (rc=2): gone - the guest may still be frozen']),
    ([dict(image='a', snapshot='s', group='g', freeze_error='freeze hook f failed', thaw_error='thaw hook t failed')],
     ['image p/a: snapshot s is only crash-consistent - freeze hook f failed',
      'image p/a: thaw hook t failed - the guest may still be frozen']),
])
def test_hook_warnings_name_each_groups_images_and_the_error(results, warnings):
    assert _hooks.hook_warnings(results, lambda image: 'p/' + image) == warnings


def test_check_mode_runs_no_hook(tmp_path):
    g = _group(tmp_path, _recorder(tmp_path, 'f.py'), _recorder(tmp_path, 't.py'))
    out = _hooks.run_group(g, lambda image: dict(image=image), check_mode=True)
    assert not os.path.exists(str(tmp_path / 'log'))
    assert {r['consistency'] for _i, r, _e in out} == {'would freeze (spec0:5)'}


def test_a_group_without_a_freeze_hook_is_still_snapshotted_at_once(tmp_path):
    g = _hooks.group_images(['vm-5-disk-0', 'vm-5-disk-1'], [dict(match=VM['match'])])[0]
    out = _hooks.run_group(g, lambda image: dict(image=image))
    assert {r['consistency'] for _i, r, _e in out} == {'grouped'}
