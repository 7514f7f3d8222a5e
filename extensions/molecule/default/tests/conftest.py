"""Fixtures for the molecule verify step (pytest-testinfra, connection=ansible).

molecule runs ``pytest --connection=ansible --ansible-inventory=<test bed inventory>`` here. Tests
that take the ``host`` fixture run once per inventory host (source and backup); the ``source`` and
``backup`` fixtures reach one named host each, for comparisons between the two sides. The Ceph
client options of each cluster come from the test bed's inventory (the rbd_replicate_* variables
of the ceph_source group).
"""

import pytest
import testinfra

from rbd_helpers import Side


@pytest.fixture(scope='session')
def inventory(pytestconfig):
    inv = pytestconfig.option.ansible_inventory
    assert inv, 'run through molecule verify (it passes --ansible-inventory)'
    return inv


@pytest.fixture(scope='session')
def source_vars(inventory):
    return testinfra.get_host('ansible://source', ansible_inventory=inventory).ansible.get_variables()


@pytest.fixture(scope='session')
def source(inventory, source_vars):
    host = testinfra.get_host('ansible://source', ansible_inventory=inventory)
    return Side(host, source_vars['rbd_replicate_source_ceph'])


@pytest.fixture(scope='session')
def backup(inventory, source_vars):
    assert source_vars['rbd_replicate_dest_host'] == 'backup'
    host = testinfra.get_host('ansible://backup', ansible_inventory=inventory)
    return Side(host, source_vars['rbd_replicate_dest_ceph'])
