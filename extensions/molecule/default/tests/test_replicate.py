"""What one converge plus two more nights (side_effect.yml) must have left on the real hosts."""

import pytest

from rbd_helpers import IMAGES, IMPORTING, POOL, PREFIX


# ------------------------------------------------------------------ both hosts (host fixture)

def test_sshd_listens_on_its_address(host):
    address = host.ansible.get_variables()['ansible_host']
    assert address in ('127.0.0.2', '127.0.0.3')
    assert host.socket('tcp://%s:2222' % address).is_listening


def test_both_sshd_listen(host):
    for address in ('127.0.0.2', '127.0.0.3'):
        assert host.socket('tcp://%s:2222' % address).is_listening, address


def test_ceph_common_installed(host):
    assert host.package('ceph-common').is_installed


# --------------------------------------------------------------- source against backup

def test_source_has_the_prepared_images(source):
    assert source.images() == sorted(IMAGES)


def test_backup_lists_every_source_image(source, backup):
    src = source.images()
    assert src, 'no image in the source pool %s' % POOL
    assert set(src) <= set(backup.images())


@pytest.mark.parametrize('image', IMAGES)
def test_newest_snapshot_on_both_sides(source, backup, image):
    src = source.our_snaps(image)
    assert src, 'no %s* snapshot of %s on the source' % (PREFIX, image)
    assert src[-1] in backup.our_snaps(image)


@pytest.mark.parametrize('image', IMAGES)
def test_newest_snapshot_byte_identical(source, backup, image):
    snap = source.our_snaps(image)[-1]
    src_sha, dst_sha = source.export_sha(image, snap), backup.export_sha(image, snap)
    assert src_sha == dst_sha, '%s@%s: source %s, backup %s' % (image, snap, src_sha, dst_sha)


@pytest.mark.parametrize('image', IMAGES)
def test_source_retention_last_2(source, image):
    assert 1 <= len(source.our_snaps(image)) <= 2


@pytest.mark.parametrize('image', IMAGES)
def test_retention_on_both_sides(source, backup, image):
    # The destination keeps last: 3 (+ daily/weekly/monthly, all the same day here), the source
    # last: 2. After the scenario's three runs (converge + two in side_effect.yml) the source must
    # have pruned its oldest snapshot, which the backup still holds.
    src, dst = source.our_snaps(image), backup.our_snaps(image)
    assert set(src) <= set(dst)
    assert 1 <= len(dst) <= 3
    assert len(src) == min(len(dst), 2)
    if len(dst) == 3:
        assert dst[0] not in src


@pytest.mark.parametrize('image', IMAGES)
def test_no_importing_mark_left_on_backup(backup, image):
    assert IMPORTING not in backup.meta(image)
