# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import random
import threading
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils._parallel import run_all
from ansible_collections.ceph_rbd.backup.plugins.module_utils import _module as M


# -- run_all ---------------------------------------------------------------------------------------

def test_run_all_empty():
    assert run_all([], lambda i: i, 4) == []


@pytest.mark.parametrize('workers', [1, 3, 16])
def test_run_all_order_preserved(workers):
    rng = random.Random(workers)
    delays = dict((i, rng.random() * 0.01) for i in range(20))

    def work(i):
        time.sleep(delays[i])
        return i * 10

    out = run_all(iter(range(20)), work, workers)
    assert out == [(i, i * 10, None) for i in range(20)]


@pytest.mark.parametrize('workers', [1, 4])
def test_run_all_exceptions_per_item(workers):
    def work(i):
        if i % 3 == 0:
            raise ValueError('bad %d' % i)
        if i == 4:
            raise KeyError()          # empty message -> replaced by a descriptive RuntimeError
        return i

    out = run_all(range(7), work, workers)
    assert [o[0] for o in out] == list(range(7))
    for item, result, error in out:
        assert (result is None) != (error is None)
        if item % 3 == 0:
            assert isinstance(error, ValueError) and str(error) == 'bad %d' % item and result is None
        elif item == 4:
            assert isinstance(error, RuntimeError) and str(error).startswith('KeyError: ')
            assert 'Traceback' in str(error)
        else:
            assert result == item and error is None


@pytest.mark.parametrize('workers, n', [(1, 6), (2, 10), (3, 12), (5, 40)])
def test_run_all_bounded_concurrency(workers, n):
    lock = threading.Lock()
    state = dict(now=0, max=0)

    def work(i):
        with lock:
            state['now'] += 1
            state['max'] = max(state['max'], state['now'])
        time.sleep(0.02)
        with lock:
            state['now'] -= 1
        return i

    out = run_all(range(n), work, workers)
    assert [r for _i, r, _e in out] == list(range(n))
    assert state['max'] == workers


def test_run_all_workers_zero_runs_serially():
    assert run_all([1, 2], lambda i: -i, 0) == [(1, -1, None), (2, -2, None)]


# -- _module helpers with a fake AnsibleModule -----------------------------------------------------

class Exit(Exception):
    pass


class FakeModule:
    def __init__(self, params, diff=False):
        self.params = params
        self._diff = diff
        self.result = None

    def fail_json(self, **kw):
        self.result = dict(kw, failed=True)
        raise Exit()

    def exit_json(self, **kw):
        self.result = kw
        raise Exit()


def test_argument_spec_merges():
    spec = M.argument_spec(pool=dict(type='str', required=True))
    assert spec['pool'] == dict(type='str', required=True)
    assert spec['parallel'] == dict(type='int', default=8)
    assert spec['timeout']['default'] == 300 and 'keyring' in spec['ceph']['options'] and 'keyring' not in spec


def test_image_items_normalizes():
    m = FakeModule(dict(images=['a', dict(image='b', keep=['s']), dict(name='c', keep=None, x=1)], parallel=2))
    assert M.image_items(m, fields=('keep',)) == [dict(image='a'), dict(image='b', keep=['s']), dict(image='c')]


@pytest.mark.parametrize('images, parallel, needle', [
    (['a', 'b', 'a'], 1, 'images listed more than once: a'),
    ([dict(keep=1)], 1, 'every element must be an image name'),
    ([''], 1, 'every element must be an image name'),
    ([5], 1, 'every element must be an image name'),
])
def test_image_items_failures(images, parallel, needle):
    m = FakeModule(dict(images=images, parallel=parallel))
    with pytest.raises(Exit):
        M.image_items(m)
    assert m.result['failed'] and needle in m.result['msg']


def test_finish_success_and_partial_failure():
    outcomes = [(dict(image='vm-a'), dict(changed=True, x=1), None),
                (dict(image='vm-b'), None, RuntimeError('boom')),
                (dict(image='vm-c'), dict(changed=False), None)]
    m = FakeModule(dict(fail_on_image_error=True), diff=True)
    with pytest.raises(Exit):
        M.finish(m, outcomes, 'rbd_x', diff=dict(before='', after=''), names=['vm-a', 'vm-b', 'vm-c'])
    r = m.result
    assert r['failed'] is True
    assert r['msg'] == 'rbd_x failed for 1 of 3 image(s): image vm-b: boom'
    assert r['failed_images'] == ['vm-b'] and r['changed'] is True and r['names'] == ['vm-a', 'vm-b', 'vm-c']
    assert r['images'] == [dict(image='vm-a', changed=True, x=1, failed=False),
                           dict(image='vm-b', failed=True, changed=False, msg='boom'),
                           dict(image='vm-c', changed=False, failed=False)]
    assert r['diff'] == dict(before='', after='')

    m = FakeModule(dict(fail_on_image_error=False))
    with pytest.raises(Exit):
        M.finish(m, outcomes, 'rbd_x', diff=dict(before=''))
    assert 'failed' not in m.result and m.result['failed_images'] == ['vm-b'] and 'diff' not in m.result


def test_finish_all_ok_not_changed():
    m = FakeModule(dict(fail_on_image_error=True))
    with pytest.raises(Exit):
        M.finish(m, [(dict(image='a'), dict(changed=False, image='a'), None)], 'w')
    assert m.result == dict(changed=False, images=[dict(image='a', changed=False, failed=False)], failed_images=[])


def test_finish_names_image_whose_name_is_a_common_word():
    m = FakeModule(dict())
    with pytest.raises(Exit):
        M.finish(m, [(dict(image='disk'), None, RuntimeError('ssh: disk quota exceeded'))], 'w')
    assert 'image disk' in m.result['msg']


def test_finish_error_already_naming_image_not_prefixed_twice():
    m = FakeModule(dict())
    with pytest.raises(Exit):
        M.finish(m, [(dict(image='vm1'), None, RuntimeError('image rbd/vm1: gone'))], 'w')
    assert m.result['msg'] == 'w failed for 1 of 1 image(s): image rbd/vm1: gone'


def test_run_images_uses_parallel():
    m = FakeModule(dict(parallel=None))
    assert M.run_images(m, [dict(image='a')], lambda i: i['image']) == [(dict(image='a'), 'a', None)]


@pytest.mark.parametrize('name, bad', [('vm-1', False), ('vm 1 $(x)', False), ('-x', True), ('--log-file=/x', True),
                                       ('a/b', True), ('a@b', True), ('a-', False)])
def test_image_name_problem(name, bad):
    assert bool(M.image_name_problem(name)) == bad
