"""File-level restore (playbook restore_files, module rbd_file_restore), proven on the real clusters.

Disk images are built here as root (sfdisk, mkfs.ext4 -d, mkfs.xfs on a loop device), written into source
images night after night (only the 4 MiB chunks that changed), replicated with the nightly playbook, and files
are brought back from a chosen night and compared byte for byte (sha256), with their mode and mtime.
"""

import glob
import hashlib
import json
import os
import subprocess
import tempfile
import time

from conftest import random_data, role_vars

MiB = 1 << 20
CHUNK = 4 * MiB
MODES = {1: 0o644, 2: 0o640, 3: 0o600}


def sh(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=120, **kw).stdout


def night_files(pool, night):
    """What the guest's file system holds on that night: {path: (bytes, mode)}, plus symlinks."""
    files = {
        'notes.txt': (random_data(3000 + night, seed='%s-notes-%d' % (pool, night)), MODES[night]),
        'docs/report.bin': (random_data(MiB + night, seed='%s-report-%d' % (pool, night)), 0o644),
        'docs/with space;$(x).txt': (random_data(100, seed='%s-odd-%d' % (pool, night)), 0o600),
    }
    if night < 3:
        files['gone.txt'] = (random_data(5000, seed='%s-gone-%d' % (pool, night)), 0o644)
    links = {'latest': '/docs', 'escape': '../../../../etc'}
    return files, links


def populate(root, files, links, night):
    for path, (data, mode) in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(data)
        os.chmod(full, mode)
        os.utime(full, (1700000000 + night * 86400, 1700000000 + night * 86400))
    for path, target in links.items():
        os.symlink(target, os.path.join(root, path))


def build_disk(workdir, pool, night, fstype, table, size):
    """A disk image file: a partition table (gpt, dos or none) and an ext4 or xfs file system with the night's
    files in the first partition (or the whole image)."""
    img = os.path.join(workdir, '%s-%d.img' % (pool, night))
    with open(img, 'wb') as f:
        f.truncate(size)
    offset, fs_size = 0, size
    if table != 'none':
        sh('sfdisk', '--quiet', img, input='label: %s\n,%dMiB,L\n,,L\n' % (table, size // MiB - 40))
        offset, fs_size = MiB, size - 40 * MiB - MiB
    files, links = night_files(pool, night)
    content = os.path.join(workdir, 'content-%s-%d' % (pool, night))
    os.makedirs(content)
    populate(content, files, links, night)
    if fstype == 'ext4':
        sh('mkfs.ext4', '-q', '-F', '-d', content, '-E', 'offset=%d' % offset, img, '%dk' % (fs_size // 1024))
        if table == 'gpt':
            # a second file system (partition 2: from the end of the first to 1 MiB before the image's end,
            # which leaves room for the backup GPT), holding only other.txt: the restore must choose
            other = os.path.join(workdir, 'other-%s-%d' % (pool, night))
            os.makedirs(other)
            with open(os.path.join(other, 'other.txt'), 'wb') as f:
                f.write(random_data(1000, seed='%s-other' % pool))
            start = MiB + (size // MiB - 40) * MiB    # where sfdisk put partition 2 (1 MiB aligned)
            sh('mkfs.ext4', '-q', '-F', '-d', other, '-E', 'offset=%d' % start, img,
               '%dk' % ((size - MiB - start) // 1024))
    else:
        dev = sh('losetup', '--offset', str(offset), '--sizelimit', str(fs_size), '--find', '--show', img).strip()
        mnt = os.path.join(workdir, 'mnt-%s-%d' % (pool, night))
        os.makedirs(mnt)
        try:
            sh('mkfs.xfs', '-q', '-f', dev)
            sh('mount', dev, mnt)
            try:
                sh('cp', '-a', content + '/.', mnt)
            finally:
                sh('umount', mnt)
        finally:
            sh('losetup', '--detach', dev)
    with open(img, 'rb') as f:
        return f.read()


def write_changed(bed, pool, image, data, previous):
    """Write the chunks of ``data`` that differ from ``previous`` (None: every non-zero chunk)."""
    for off in range(0, len(data), CHUNK):
        chunk = data[off:off + CHUNK]
        if previous is None and chunk.count(0) == len(chunk):
            continue
        if previous is not None and previous[off:off + CHUNK] == chunk:
            continue
        bed.src.write(pool, image, off, chunk)


def leftovers(bed, tmpdir):
    """Anything of a file restore still there on the backup host: loop devices, mounts, work directories."""
    loops = json.loads(bed.host_sh('backup', 'losetup', '--list', '--json', '--output', 'NAME,BACK-FILE')
                       or '{}').get('loopdevices', [])
    mounts = [line.split()[1] for line in bed.host_sh('backup', 'cat', '/proc/mounts').splitlines()
              if 'rbd-file-restore.' in line.split()[1]]
    return dict(loops=[d for d in loops if 'rbd-file-restore.' in (d.get('back-file') or '')],
                mounts=mounts, dirs=glob.glob(os.path.join(tmpdir, 'rbd-file-restore.*')))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def restore_files(bed, pool, image, tmpdir, dest, paths, expect_rc=0, **extra):
    v = dict(rbd_restore_pool=pool, rbd_restore_image=image, rbd_restore_paths=paths,
             rbd_restore_files_dest=dest, rbd_restore_files_tmpdir=tmpdir)
    v.update(extra)
    return bed.playbook(extra=v, playbook='ceph_rbd.backup.restore_files', expect_rc=expect_rc)


def test_a_file_comes_back_as_it_was_on_night_2(bed, pools):
    layouts = {'vm-ext4': ('ext4', 'gpt', 64 * MiB), 'vm-xfs': ('xfs', 'dos', 352 * MiB),
               'vm-bare': ('ext4', 'none', 32 * MiB)}
    build = tempfile.mkdtemp(prefix='frt-build-')
    tmpdir = tempfile.mkdtemp(prefix='frt-tmp-')
    previous = {}
    for image, (_fs, _table, size) in layouts.items():
        bed.src.create(pools, image, size)
    for night in (1, 2, 3):
        for image, (fstype, table, size) in layouts.items():
            data = build_disk(build, '%s-%s' % (pools, image), night, fstype, table, size)
            write_changed(bed, pools, image, data, previous.get(image))
            previous[image] = data
        bed.playbook(extra=role_vars(pools))
        time.sleep(1.1)
    sh('rm', '-rf', build)
    snaps = dict((image, bed.dst.snaps(pools, image)) for image in layouts)
    assert all(len(s) == 3 for s in snaps.values()), snaps

    for image in layouts:
        seed_pool = '%s-%s' % (pools, image)
        files2, _links = night_files(seed_pool, 2)
        dest = os.path.join(tmpdir, 'out-' + image)
        out = restore_files(bed, pools, image, tmpdir, dest,
                            ['notes.txt', '/gone.txt', 'latest/report.bin', 'docs/with space;$(x).txt'],
                            rbd_restore_snapshot=snaps[image][1])
        assert 'from %s/%s@%s' % (pools, image, snaps[image][1]) in out, out[-3000:]
        for request, path in (('notes.txt', 'notes.txt'), ('gone.txt', 'gone.txt'),
                              ('latest/report.bin', 'docs/report.bin'),
                              ('docs/with space;$(x).txt', 'docs/with space;$(x).txt')):
            data, mode = files2[path]
            with open(os.path.join(dest, path), 'rb') as f:
                assert sha(f.read()) == sha(data), (image, request)
            st = os.lstat(os.path.join(dest, path))
            assert st.st_mode & 0o7777 == mode, (image, path, oct(st.st_mode))
            assert int(st.st_mtime) == 1700000000 + 2 * 86400, (image, path)
        assert leftovers(bed, tmpdir) == dict(loops=[], mounts=[], dirs=[]), leftovers(bed, tmpdir)

    # check mode: reports the snapshot it would export, exports, mounts and writes nothing
    out = bed.playbook('-v', extra=dict(rbd_restore_pool=pools, rbd_restore_image='vm-ext4', rbd_restore_paths=['notes.txt'],
                                        rbd_restore_files_dest=os.path.join(tmpdir, 'out-check'),
                                        rbd_restore_files_tmpdir=tmpdir),
                       playbook='ceph_rbd.backup.restore_files', check=True)
    assert 'would export %s/vm-ext4@%s' % (pools, snaps['vm-ext4'][2]) in out, out[-3000:]
    assert not os.path.exists(os.path.join(tmpdir, 'out-check'))
    assert leftovers(bed, tmpdir) == dict(loops=[], mounts=[], dirs=[]), leftovers(bed, tmpdir)

    # the newest night, to another host (through the controller): gone.txt is gone, notes.txt is night 3's
    files3, _links = night_files('%s-vm-xfs' % pools, 3)
    dest = os.path.join(tmpdir, 'out-newest')
    out = restore_files(bed, pools, 'vm-xfs', tmpdir, dest, ['notes.txt'], rbd_restore_files_target='source')
    assert 'source:%s holds notes.txt' % dest in out, out[-3000:]
    with open(os.path.join(dest, 'notes.txt'), 'rb') as f:
        assert sha(f.read()) == sha(files3['notes.txt'][0])
    assert os.stat(os.path.join(dest, 'notes.txt')).st_mode & 0o7777 == MODES[3]
    out = restore_files(bed, pools, 'vm-xfs', tmpdir, dest + '-2', ['gone.txt'], expect_rc=2)
    assert 'gone.txt: no such file or directory in the file system' in out, out[-3000:]
    assert leftovers(bed, tmpdir) == dict(loops=[], mounts=[], dirs=[]), leftovers(bed, tmpdir)

    # injected failures: an escape by "..", a symlink that points out of the file system, a file already there
    out = restore_files(bed, pools, 'vm-ext4', tmpdir, dest + '-3', ['docs/../../etc/passwd'], expect_rc=2)
    assert '".." is not allowed' in out
    out = restore_files(bed, pools, 'vm-ext4', tmpdir, dest + '-3', ['escape/passwd'], expect_rc=2)
    assert 'escape/passwd: no such file or directory in the file system' in out, out[-3000:]
    # vm-ext4 has two file systems: a path in neither is named (and no partition suggested, none can help);
    # paths that are each in one of them are restored in two runs, each with its partition
    out = restore_files(bed, pools, 'vm-ext4', tmpdir, dest + '-4', ['notes.txt', 'etc/nowhere'], expect_rc=2)
    assert 'etc/nowhere: no such file or directory in the file system, nor in any other of the image' in out, \
        out[-3000:]
    assert 'set partition' not in out and 'partition 2 (ext4' in out, out[-3000:]
    out = restore_files(bed, pools, 'vm-ext4', tmpdir, dest + '-4', ['notes.txt', 'other.txt'], expect_rc=2)
    assert 'no single file system holds every requested path' in out, out[-3000:]
    assert 'partition 1 (ext4' in out and 'lacks other.txt' in out and 'lacks notes.txt' in out, out[-3000:]
    out = restore_files(bed, pools, 'vm-ext4', tmpdir, dest + '-4', ['other.txt'], rbd_restore_partition=2)
    with open(os.path.join(dest + '-4', 'other.txt'), 'rb') as f:
        assert sha(f.read()) == sha(random_data(1000, seed='%s-vm-ext4-other' % pools))
    out = restore_files(bed, pools, 'vm-ext4', tmpdir, os.path.join(tmpdir, 'out-vm-ext4'), ['notes.txt'],
                        rbd_restore_snapshot=snaps['vm-ext4'][1], expect_rc=2)
    assert 'already present in' in out and 'overwrite=true' in out, out[-3000:]
    assert leftovers(bed, tmpdir) == dict(loops=[], mounts=[], dirs=[]), leftovers(bed, tmpdir)
    # nothing was written to the backup: its snapshots and head are what the replication left
    assert dict((image, bed.dst.snaps(pools, image)) for image in layouts) == snaps
    sh('rm', '-rf', tmpdir)


def test_cleanup_after_a_killed_run(bed, tmp_path):
    """A run killed while mounted (simulated: a loop device and a read-only mount below a work directory) is
    cleaned up by state=absent, which the playbook's always section runs."""
    workdir = os.path.join(str(tmp_path), 'rbd-file-restore.killed')
    os.makedirs(os.path.join(workdir, 'mnt', 'p1'))
    img = os.path.join(workdir, 'image.raw')
    with open(img, 'wb') as f:
        f.truncate(16 * MiB)
    # on the backup host, where the killed run would have left them (its own mount namespace on a bed host of
    # a newer release)
    bed.host_sh('backup', 'mkfs.ext4', '-q', '-F', img)
    dev = bed.host_sh('backup', 'losetup', '--read-only', '--find', '--show', img).strip()
    bed.host_sh('backup', 'mount', '-o', 'ro,noload', dev, os.path.join(workdir, 'mnt', 'p1'))
    r = bed.dst_module('rbd_file_restore', dict(workdir=workdir, state='absent'))
    assert 'umount %s/mnt/p1' % workdir in r['teardown'] and 'losetup --detach %s' % dev in r['teardown']
    assert not os.path.exists(workdir)
    assert leftovers(bed, str(tmp_path)) == dict(loops=[], mounts=[], dirs=[])
    # a directory that is not a work directory is refused, never removed
    r = bed.dst_module('rbd_file_restore', dict(workdir=str(tmp_path), state='absent'), expect_failed=True)
    assert 'must start with' in r['msg'] and os.path.isdir(str(tmp_path))
