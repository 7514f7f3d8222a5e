# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import stat

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _filerestore as fr

MiB = 1 << 20
DIR, FILE, LINK = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777


class FakeFs:
    """A file system as {relative path: mode} and {relative path: link target}."""

    def __init__(self, modes, links=None):
        self.modes = dict(modes, **{'': DIR})
        self.links = links or {}

    def lstat_mode(self, rel):
        return self.modes.get(rel)

    def readlink(self, rel):
        return self.links[rel]

    def resolve(self, path):
        return fr.resolve_in_root(fr.request_components(path), self.lstat_mode, self.readlink)


@pytest.mark.parametrize('path, parts', [
    ('/etc/hosts', ['etc', 'hosts']),
    ('etc/hosts', ['etc', 'hosts']),
    ('//etc/./hosts/', ['etc', 'hosts']),
    ('with space;$(rm -rf x)', ['with space;$(rm -rf x)']),
    ('-rf', ['-rf']),
])
def test_request_components(path, parts):
    assert fr.request_components(path) == parts


@pytest.mark.parametrize('path, why', [
    ('', 'not its root'), ('/', 'not its root'), ('/./', 'not its root'),
    ('../etc/passwd', '".." is not allowed'), ('a/../../b', '".." is not allowed'), ('a/..', '".." is not allowed'),
    ('a\0b', 'NUL'),
])
def test_request_components_refused(path, why):
    with pytest.raises(fr.RestoreError, match=why.replace('(', r'\(').replace('.', r'\.')):
        fr.request_components(path)


FS = FakeFs(
    {'etc': DIR, 'etc/hosts': FILE, 'docs': DIR, 'docs/r.bin': FILE, 'latest': LINK, 'abs': LINK,
     'escape': LINK, 'loop': LINK, 'file': FILE, 'deadlink': LINK, 'up': LINK, 'etc/rel': LINK},
    {'latest': '/docs', 'abs': '/etc/hosts', 'escape': '../../../../etc', 'loop': 'loop', 'deadlink': '/nowhere',
     'up': '..', 'etc/rel': '../docs'})


@pytest.mark.parametrize('path, resolved', [
    ('etc/hosts', 'etc/hosts'),
    ('latest/r.bin', 'docs/r.bin'),             # an absolute symlink on the way: the guest's root
    ('escape/hosts', 'etc/hosts'),              # ".." at the root stays at the root: never the host's /etc
    ('up/etc/hosts', 'etc/hosts'),
    ('etc/rel/r.bin', 'docs/r.bin'),            # a relative symlink
    ('abs', 'abs'),                             # the last component is not followed: restored as a symlink
    ('deadlink', 'deadlink'),
    ('latest', 'latest'),
])
def test_resolve_in_root(path, resolved):
    assert FS.resolve(path) == resolved


@pytest.mark.parametrize('path, why', [
    ('nothere', 'no such file'),
    ('etc/nothere', 'no such file'),
    ('deadlink/x', 'no such file'),
    ('file/x', 'is not a directory'),
    ('loop/x', 'too many levels'),
    ('up/..', '".." is not allowed'),
])
def test_resolve_in_root_refused(path, why):
    with pytest.raises(fr.RestoreError, match=why.replace('.', r'\.')):
        FS.resolve(path)


def test_resolve_to_root_refused():
    with pytest.raises(fr.RestoreError, match='root of the file system'):
        fr.resolve_in_root(['up', 'etc', '..'], FS.lstat_mode, FS.readlink)


@pytest.mark.parametrize('path, ok', [
    ('/var/tmp/rbd-file-restore.abc123', True),
    ('/var/tmp/rbd-file-restore.abc123/', True),
    ('/var/tmp', False), ('/', False), ('rbd-file-restore.x', False),
    ('/var/tmp/../rbd-file-restore.x', False), ('/var/tmp/./rbd-file-restore.x', False),
    ('/var/tmp/rbd-file-restore.x/..', False), ('/home/alice', False),
])
def test_workdir_problem(path, ok):
    assert (fr.workdir_problem(path) is None) == ok


def test_space_problem():
    assert fr.space_problem(10 * MiB, 10 * MiB, '/var/tmp') is None
    assert 'needs 11 MiB in /var/tmp but only 10 MiB' in fr.space_problem(10 * MiB + 1, 10 * MiB, '/var/tmp')


GPT = {"partitiontable": {"label": "gpt", "unit": "sectors", "sectorsize": 512, "partitions": [
    {"node": "disk.img1", "start": 2048, "size": 204800, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
    {"node": "disk.img2", "start": 206848, "size": 315392, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}]}}
MBR = {"partitiontable": {"label": "dos", "unit": "sectors", "partitions": [
    {"node": "/x/vm.img1", "start": 2048, "size": 1000, "type": "83", "bootable": True},
    {"node": "/x/vm.img2", "start": 4096, "size": 8192, "type": "5"},
    {"node": "/x/vm.img5", "start": 6144, "size": 2048, "type": "8e"},
    {"node": "/x/vm.img10", "start": 9000, "size": 9999, "type": "83"}]}}


def test_regions_gpt():
    assert fr.regions(json.dumps(GPT), 256 * MiB) == [
        dict(number=1, start=MiB, size=100 * MiB, type='0fc63daf-8483-4772-8e79-3d69d8477de4', table='gpt'),
        dict(number=2, start=206848 * 512, size=315392 * 512, type='0fc63daf-8483-4772-8e79-3d69d8477de4',
             table='gpt')]


def test_regions_mbr_skips_extended_and_clips_to_the_image():
    got = fr.regions(json.dumps(MBR), 9000 * 512 + 100 * 512)
    assert [(r['number'], r['start'], r['size'], r['type']) for r in got] == [
        (1, MiB, 1000 * 512, '83'), (5, 6144 * 512, MiB, '8e'), (10, 9000 * 512, 100 * 512, '83')]


def test_regions_without_a_table_is_the_whole_image():
    assert fr.regions(None, 32 * MiB) == [dict(number=0, start=0, size=32 * MiB, type='', table='none')]


def test_parse_blkid_and_mount_options():
    tags = fr.parse_blkid('DEVNAME=/x\nUUID=1-2\nBLOCK_SIZE=4096\nTYPE=xfs\nUSAGE=filesystem\n')
    assert tags['TYPE'] == 'xfs' and tags['UUID'] == '1-2'
    assert fr.mount_options('xfs') == 'ro,norecovery,nouuid'
    assert fr.mount_options('ext4') == 'ro,noload'
    for fstype, options in fr.MOUNT_OPTIONS.items():
        assert options.split(',', maxsplit=1)[0] == 'ro', fstype
    assert fr.mount_options('LVM2_member') is None and fr.mount_options('') is None and fr.mount_options(None) is None


def fs(number, fstype='ext4', mounted=True, size=100 * MiB, label=''):
    return dict(number=number, fstype=fstype, mounted=mounted, size=size, label=label, problem='')


def everything(_fs):
    """missing(): the file system lacks the one path asked for."""
    return ['a.txt']


def nothing(_fs):
    """missing(): the file system holds every path asked for."""
    return []


def test_choose_filesystem():
    one = [fs(1, mounted=False, fstype='swap'), fs(2)]
    assert fr.choose_filesystem(one, None, everything)['number'] == 2     # the only one: its own error later
    two = [fs(1, label='boot'), fs(2, 'xfs')]
    assert fr.choose_filesystem(two, None, lambda f: [] if f['number'] == 2 else ['a.txt'])['number'] == 2
    assert fr.choose_filesystem(two, 1, everything)['number'] == 1
    with pytest.raises(fr.RestoreError, match='exist in 2 file systems'):
        fr.choose_filesystem(two, None, nothing)
    with pytest.raises(fr.RestoreError, match='there is no partition 3'):
        fr.choose_filesystem(two, 3, nothing)
    with pytest.raises(fr.RestoreError, match='cannot be mounted'):
        fr.choose_filesystem(one, 1, nothing)
    with pytest.raises(fr.RestoreError, match='no supported file system.*the whole image \\(swap'):
        fr.choose_filesystem([fs(0, 'swap', mounted=False)], None, nothing)


@pytest.mark.parametrize('lacks, words, not_words', [
    # a path that no file system holds is named, and no partition is suggested (none can help)
    ({1: ['etc/nowhere'], 2: ['etc/nowhere']},
     ["etc/nowhere: no such file or directory in the file system, nor in any other of the image",
      "partition 1 (ext4, label 'boot', 100 MiB)", 'partition 2 (xfs'], ['set partition', 'separate runs']),
    # two of three paths are nowhere; the one that is somewhere is not named as missing
    ({1: ['a', 'b', 'c'], 2: ['a', 'c']}, ['a, c: no such file'], ['b,', 'separate runs']),
    # every path is somewhere, but not all in one: each file system with what it lacks, and what to do
    ({1: ['home/x'], 2: ['etc/fstab']},
     ["no single file system holds every requested path (partition 1 (ext4, label 'boot', 100 MiB) lacks "
      "home/x; partition 2 (xfs, 100 MiB) lacks etc/fstab); restore them in separate runs, each with its "
      "partition"], ['no such file']),
])
def test_choose_filesystem_names_what_no_file_system_holds(lacks, words, not_words):
    two = [fs(1, label='boot'), fs(2, 'xfs')]
    with pytest.raises(fr.RestoreError) as e:
        fr.choose_filesystem(two, None, lambda f: lacks[f['number']])
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    for w in not_words:
        assert w not in str(e.value), (w, str(e.value))


def test_mounts_under():
    text = ('/dev/sda1 / ext4 rw 0 0\n'
            '/dev/loop3 /var/tmp/rbd-file-restore.ab/mnt/p1 ext4 ro 0 0\n'
            '/dev/loop4 /var/tmp/rbd-file-restore.ab/mnt/p\\0402 xfs ro 0 0\n'
            '/dev/loop5 /var/tmp/rbd-file-restore.abc/mnt/p1 ext4 ro 0 0\n'
            'x /var/tmp/rbd-file-restore.ab/mnt/p1/deeper tmpfs rw 0 0\n')
    assert fr.mounts_under(text, '/var/tmp/rbd-file-restore.ab') == [
        '/var/tmp/rbd-file-restore.ab/mnt/p1/deeper', '/var/tmp/rbd-file-restore.ab/mnt/p 2',
        '/var/tmp/rbd-file-restore.ab/mnt/p1']


def test_loops_under():
    text = json.dumps({'loopdevices': [
        {'name': '/dev/loop0', 'back-file': '/var/tmp/rbd-file-restore.ab/image.raw'},
        {'name': '/dev/loop1', 'back-file': '/var/tmp/rbd-file-restore.ab/image.raw (deleted)'},
        {'name': '/dev/loop2', 'back-file': '/var/tmp/rbd-file-restore.abc/image.raw'},
        {'name': '/dev/loop3', 'back-file': None}]})
    assert fr.loops_under(text, '/var/tmp/rbd-file-restore.ab') == ['/dev/loop0', '/dev/loop1']
    assert fr.loops_under('', '/x') == [] and fr.loops_under('{}', '/x') == []
