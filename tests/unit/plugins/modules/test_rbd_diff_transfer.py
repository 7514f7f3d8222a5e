# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rbd_diff_transfer's pure checks of direct mode (#13); the transfer itself: tests/integration/test_direct.py."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ceph_rbd.backup.plugins.modules import rbd_diff_transfer as M


def _params(**kw):
    p = dict(mode='direct', source_pool='rbd', source_namespace=None, dest_pool=None, dest_namespace=None,
             ceph={}, source_ceph={'conf': '/etc/ceph/source.conf'}, remote=None)
    p.update(kw)
    return p


def test_direct_with_its_own_source_cluster_is_fine():
    assert M.direct_problem(_params()) is None
    assert M.direct_problem(_params(mode='pull', source_ceph=None)) is None


def test_direct_onto_the_same_images_is_refused():
    assert 'imported into themselves' in M.direct_problem(_params(source_ceph={}))
    same = dict(conf='/etc/ceph/ceph.conf', user='x')
    assert 'imported into themselves' in M.direct_problem(_params(ceph=same, source_ceph=dict(same, cluster=None)))


def test_direct_within_one_cluster_to_another_pool_or_namespace_is_allowed():
    assert M.direct_problem(_params(source_ceph={}, dest_pool='rbd-backup')) is None
    assert M.direct_problem(_params(source_ceph={}, dest_namespace='backup')) is None


def test_the_spec_knows_direct_and_needs_remote_only_for_ssh():
    assert M.SPEC['mode']['choices'] == ['pull', 'push', 'direct']
    assert M.SPEC['remote']['required'] is False
    assert ('mode', 'direct', ['source_ceph']) in M.REQUIRED_IF and ('mode', 'pull', ['remote']) in M.REQUIRED_IF
