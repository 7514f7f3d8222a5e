# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ranges of the modules' and the role's numbers (issue #22): each edge on both sides, the paths into
dicts and lists, and that the tables cover every int option of every module and every int role variable."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os

import pytest
import yaml

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _validate as V
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import check_ranges

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
MODULES = ['rbd_diff_transfer', 'rbd_extent_verify', 'rbd_file_restore', 'rbd_image_info', 'rbd_replication_lock',
           'rbd_replication_status', 'rbd_snapshot', 'rbd_snapshot_prune']

# (option, value just outside, value just inside) on each side; None: no such side
EDGES = [
    ('timeout', (0, 1), (86401, 86400)),
    ('parallel', (0, 1), (1025, 1024)),
    ('max_streams', (0, 1), (65, 64)),
    ('compression_level', (0, 1), (20, 19)),
    ('live_import_wait', (-1, 0), (3601, 3600)),
    ('ttl', (0, 1), (604801, 604800)),
    ('partition', (-1, 0), (257, 256)),
    ('bwlimit', ('0', '1'), None),
    ('warn_age', ('-1', '0'), None),
    ('crit_age', ('-1s', '0s'), None),
]


def _nested(path, value):
    """The parameters that hold ``value`` at ``path`` (a list on the way for groups)."""
    head, _dot, rest = path.partition('.')
    if not rest:
        return {head: value}
    inner = _nested(rest, value)
    return {head: [inner] if head == 'groups' else inner}


@pytest.mark.parametrize('option, low, high', EDGES, ids=[e[0] for e in EDGES])
def test_each_edge_of_each_range(option, low, high):
    for edge in (low, high):
        if edge is None:
            continue
        outside, inside = edge
        assert V.range_problems({option: inside}) == []
        problems = V.range_problems({option: outside})
        assert len(problems) == 1 and problems[0].startswith(option + ' must be '), problems
        assert problems[0].endswith('got %r' % (outside,)), problems


@pytest.mark.parametrize('path, name, outside, inside', [
    ('run_lock.ttl', 'run_lock.ttl', 0, 21600),
    ('remote.port', 'remote.port', 65536, 65535),
    ('remote.port', 'remote.port', 0, 1),
    ('groups.timeout', 'groups[0].timeout', 0, 1),
    ('groups.timeout', 'groups[0].timeout', 3601, 3600),
    ('groups.remote.port', 'groups[0].remote.port', 0, 22),
])
def test_options_inside_dicts_and_lists_are_named_by_their_path(path, name, outside, inside):
    allowed = dict(V.MODULE_RANGES)[path]
    assert V.range_problems(_nested(path, inside)) == []
    assert V.range_problems(_nested(path, outside)) == [
        '%s must be %s, from %d to %d; got %d' % (name, allowed.kind, allowed.low, allowed.high, outside)]


def test_every_element_of_a_list_is_checked_and_named():
    groups = [dict(match='a', timeout=30), dict(match='b', timeout=0, remote=dict(host='h', port=70000))]
    assert V.range_problems(dict(groups=groups)) == [
        'groups[1].timeout must be a whole number of seconds, from 1 to 3600; got 0',
        'groups[1].remote.port must be a TCP port, from 1 to 65535; got 70000']


@pytest.mark.parametrize('value, problem', [
    (0, 'timeout must be a whole number of seconds, from 1 to 86400; got 0'),
    (-5, 'timeout must be a whole number of seconds, from 1 to 86400; got -5'),
    (True, 'timeout must be a whole number of seconds, from 1 to 86400; got True'),   # Ansible's int check lets it in
    ('ten', "timeout must be a whole number of seconds, from 1 to 86400; got 'ten'"),
    (1.5, 'timeout must be a whole number of seconds, from 1 to 86400; got 1.5'),
    ('30', None),                        # what a template leaves
    (' 30 ', None),
    (30.0, None),
    (None, None),                        # not set
    ('', None),                          # a role variable's "not set"
])
def test_values_that_are_not_whole_numbers_are_refused_by_name(value, problem):
    assert V.range_problems(dict(timeout=value)) == ([problem] if problem else [])


@pytest.mark.parametrize('option, value, ok', [
    ('bwlimit', '50M', True), ('bwlimit', '1m', True), ('bwlimit', 1, True), ('bwlimit', '0', False),
    ('bwlimit', 0, False), ('bwlimit', '-1M', False), ('bwlimit', 'fast', False), ('bwlimit', '0.1', False),
    ('bwlimit', True, False),
    ('warn_age', '26h', True), ('warn_age', '0', True), ('warn_age', 0, True), ('warn_age', '2d', True),
    ('warn_age', '-1h', False), ('warn_age', 'soon', False), ('warn_age', 'infh', False), ('warn_age', 'nanh', False),
    ('crit_age', '50h', True), ('crit_age', '-50h', False),
])
def test_rates_and_ages_are_parsed_as_their_modules_parse_them(option, value, ok):
    problems = V.range_problems({option: value})
    assert (problems == []) is ok, problems
    if not ok:
        assert problems[0].startswith(option + ' must be ') and 'at least' in problems[0]


def test_every_problem_is_reported_in_the_order_of_the_table():
    assert V.range_problems(dict(max_streams=0, timeout=0, compression_level=-3, parallel=8)) == [
        'timeout must be a whole number of seconds, from 1 to 86400; got 0',
        'max_streams must be a whole number, from 1 to 64; got 0',
        'compression_level must be a zstd level, from 1 to 19; got -3']


def test_the_role_table_names_the_role_variables():
    assert V.range_problems(dict(rbd_replicate_streams=0, rbd_replicate_ssh_port=0,
                                 rbd_replicate_consistency_groups=[dict(timeout=-1)]), V.ROLE_RANGES) == [
        'rbd_replicate_streams must be a whole number, from 1 to 64; got 0',
        'rbd_replicate_consistency_groups[0].timeout must be a whole number of seconds, from 1 to 3600; got -1']
    assert V.range_problems(dict(rbd_replicate_ssh_port=65536), V.ROLE_RANGES) == [
        "rbd_replicate_ssh_port must be a TCP port (0: the other host's ansible_port, else 22), from 0 to 65535; "
        "got 65536"]


def test_the_role_and_the_modules_take_the_same_ranges():
    role = dict(V.ROLE_RANGES)
    modules = dict(V.MODULE_RANGES)
    for variable, option in [('rbd_replicate_timeout', 'timeout'), ('rbd_replicate_parallel', 'parallel'),
                             ('rbd_replicate_streams', 'max_streams'), ('rbd_replicate_lock_ttl', 'run_lock.ttl'),
                             ('rbd_replicate_compression_level', 'compression_level'),
                             ('rbd_replicate_bwlimit', 'bwlimit'),
                             ('rbd_replicate_consistency_groups.timeout', 'groups.timeout')]:
        assert role[variable] == modules[option], variable
    # rbd_replicate_streams is also rbd_extent_verify's parallel: every stream count is a valid parallel
    assert modules['parallel'].low <= role['rbd_replicate_streams'].low <= role['rbd_replicate_streams'].high \
        <= modules['parallel'].high


# -- check_ranges, in the modules ----------------------------------------------------------------------

class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, params):
        self.params = params
        self.result = None

    def fail_json(self, **kw):
        self.result = kw
        raise Failed()


def test_check_ranges_fails_the_module_naming_every_bad_option():
    m = FakeModule(dict(timeout=0, parallel=8, max_streams=0, pool='rbd'))
    with pytest.raises(Failed):
        check_ranges(m)
    assert m.result['msg'] == ('timeout must be a whole number of seconds, from 1 to 86400; got 0; '
                               'max_streams must be a whole number, from 1 to 64; got 0')


def test_check_ranges_lets_good_options_through():
    check_ranges(FakeModule(dict(timeout=300, parallel=8, max_streams=4, compression_level=3, bwlimit=None)))


class Spec(Exception):
    pass


def _argument_spec(name, monkeypatch):
    """The argument_spec a module's main() gives AnsibleModule (caught there, before anything runs)."""
    module = importlib.import_module('ansible_collections.ceph_rbd.backup.plugins.modules.' + name)

    def capture(**kw):
        raise Spec(kw['argument_spec'])
    monkeypatch.setattr(module, 'AnsibleModule', capture)
    with pytest.raises(Spec) as caught:
        module.main()
    return caught.value.args[0]


def _int_paths(spec, prefix=''):
    out = set()
    for name, option in spec.items():
        if option.get('type') == 'int':
            out.add(prefix + name)
        if option.get('options'):
            out |= _int_paths(option['options'], prefix + name + '.')
    return out


def test_every_int_option_of_every_module_has_a_range_and_every_range_an_option(monkeypatch):
    found = set()
    for name in MODULES:
        spec = _argument_spec(name, monkeypatch)
        ints = _int_paths(spec)
        assert ints <= set(p for p, _r in V.MODULE_RANGES), (name, ints - set(p for p, _r in V.MODULE_RANGES))
        found |= ints | set(p for p, _r in V.MODULE_RANGES if p.split('.', maxsplit=1)[0] in spec)
    assert set(p for p, _r in V.MODULE_RANGES) <= found    # no row for an option no module has


def test_every_int_role_variable_has_a_range_and_the_role_checks_every_one():
    specs = yaml.safe_load(open(os.path.join(REPO, 'roles', 'rbd_replicate', 'meta', 'argument_specs.yml')))
    ints = _int_paths(specs['argument_specs']['main']['options'])
    rows = set(p for p, _r in V.ROLE_RANGES)
    assert ints <= rows, ints - rows
    # the role's check task passes each of them (by its top-level variable) to the filter
    tasks = yaml.safe_load(open(os.path.join(REPO, 'roles', 'rbd_replicate', 'tasks', 'main.yml')))
    check = [t for t in tasks if 'ceph_rbd.backup.range_problems' in str(t.get('vars', {}).get('_problems'))]
    assert len(check) == 1
    names = set(p.split('.', maxsplit=1)[0] for p in rows)
    assert all("'%s': %s" % (n, n) in check[0]['vars']['_problems'] for n in names), check[0]['vars']['_problems']
    # ... before the run takes its lock or any snapshot (the pools' tasks are included after it)
    order = [t.get('name') for t in tasks]
    assert order.index(check[0]['name']) < order.index('Replicate each pool')
