# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File-level restore from a backup snapshot (module rbd_file_restore): the decisions, kept pure.

How a snapshot is exposed: ``rbd export`` of the snapshot into a sparse file in a private work directory (a
snapshot is read-only by nature; nothing is written to the cluster), then per file system a *read-only* loop
device over its byte range (``losetup --read-only --offset --sizelimit``: partition scanning of loop devices,
``losetup -P``, does not work in every container) and a read-only mount with the options that also keep the
kernel from replaying a journal (ext3/4 ``noload``, xfs ``norecovery``).

The pure parts here decide: where the partitions are (``sfdisk --json``; no table - the whole image), which
file system each holds (``blkid -p -o export``) and how it may be mounted, which file system holds the
requested paths, and whether a requested path stays inside the mounted file system. Requested paths are
resolved component by component with chroot semantics (an absolute symlink means the guest's root, ``..`` at
the root stays there), so no path and no symlink on the backup can reach a file of the host.

Everything else (running the commands, the teardown) is in :class:`Exposure`, driven by a runner
(``runner(argv, timeout, stdin_data=None) -> (rc, out, err)``, see ``_proc.run``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import posixpath
import stat
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import (
    DEVNULL, CommandError, kill_group, spawn, wait_for,
)

# The work directory's name starts with this: the cleanup removes nothing else (see workdir_problem).
WORKDIR_PREFIX = 'rbd-file-restore.'
# The exported snapshot inside the work directory.
IMAGE_FILE = 'image.raw'

# MBR partition types that hold other partitions, not a file system (their logical partitions are listed too).
EXTENDED_TYPES = frozenset(('5', 'f', '85', '0x5', '0xf', '0x85'))

# How each supported file system is mounted: read-only, and never replaying a journal (which would write).
# xfs: nouuid, so that the same file system can be mounted twice (two restores, or the source's own mount).
MOUNT_OPTIONS = {
    'ext2': 'ro',
    'ext3': 'ro,noload',
    'ext4': 'ro,noload',
    'xfs': 'ro,norecovery,nouuid',
    'btrfs': 'ro,rescue=nologreplay',
    'vfat': 'ro',
}

MAX_SYMLINKS = 40


class RestoreError(Exception):
    """A refused request or a failed step; ``str()`` says what and what to do."""


# ------------------------------------------------------------------------------------------------ requests
def request_components(path: str) -> List[str]:
    """Pure: a requested path as its components relative to the file system's root.

    ``/etc/hosts``, ``etc/hosts`` and ``/etc//./hosts`` are the same request. Refused (RestoreError): an empty
    path, the root itself, a NUL byte, and any ``..`` component (a request never climbs, whatever it would
    resolve to).
    """
    if not isinstance(path, str) or not path.strip('/'):
        raise RestoreError('path %r: name a file or directory inside the file system (not its root)' % (path,))
    if '\0' in path:
        raise RestoreError('path %r: contains a NUL byte' % (path,))
    parts = [p for p in path.split('/') if p not in ('', '.')]
    if '..' in parts:
        raise RestoreError('path %r: ".." is not allowed in a requested path' % (path,))
    if not parts:
        raise RestoreError('path %r: name a file or directory inside the file system (not its root)' % (path,))
    return parts


def resolve_in_root(parts: Sequence[str], lstat_mode: Callable[[str], Optional[int]],
                    readlink: Callable[[str], str]) -> str:
    """Pure (given the two lookups): the path, relative to the file system root, that ``parts`` names.

    Symlinks in the directories on the way are followed with chroot semantics (an absolute target starts at
    the file system's root, ``..`` at the root stays at the root); the last component is not followed (a
    symlink is restored as a symlink). ``lstat_mode(rel)`` returns the ``st_mode`` of ``rel`` (relative to the
    root, "" is the root) or None when it does not exist; ``readlink(rel)`` its target. Raises RestoreError
    when a component is missing, a directory on the way is not a directory, or symlinks loop.
    """
    todo = list(parts)
    done = []  # type: List[str]
    links = 0
    while todo:
        name = todo.pop(0)
        if name in ('', '.'):
            continue
        if name == '..':
            if done:
                done.pop()
            continue
        rel = '/'.join(done + [name])
        mode = lstat_mode(rel)
        if mode is None:
            raise RestoreError('%s: no such file or directory in the file system' % '/'.join(parts))
        if stat.S_ISLNK(mode) and todo:
            links += 1
            if links > MAX_SYMLINKS:
                raise RestoreError('%s: too many levels of symbolic links' % '/'.join(parts))
            target = readlink(rel)
            if target.startswith('/'):
                done = []
            todo = [p for p in target.split('/') if p] + todo
            continue
        if todo and not stat.S_ISDIR(mode):
            raise RestoreError('%s: %s is not a directory' % ('/'.join(parts), rel))
        done.append(name)
    if not done:
        raise RestoreError('%s: resolves to the root of the file system; name something inside it'
                           % '/'.join(parts))
    return '/'.join(done)


def workdir_problem(path: str) -> Optional[str]:
    """Pure: why ``path`` cannot be this module's work directory (which its cleanup removes), or None."""
    if not isinstance(path, str) or not path.startswith('/'):
        return 'workdir %r must be an absolute path' % (path,)
    if posixpath.normpath(path) != path.rstrip('/') or '/../' in path + '/' or '/./' in path + '/':
        return 'workdir %r must be a normalized path' % (path,)
    if not posixpath.basename(path.rstrip('/')).startswith(WORKDIR_PREFIX):
        return 'workdir %r: its name must start with %r (the cleanup removes that directory)' % (path, WORKDIR_PREFIX)
    return None


def space_problem(needed: int, free: int, where: str) -> Optional[str]:
    """Pure: the message when the sparse export of ``needed`` allocated bytes does not fit in ``free``."""
    if needed > free:
        return ('the export needs %d MiB in %s but only %d MiB are free: set a larger tmpdir'
                % (-(-needed // 1048576), where, free // 1048576))
    return None


# ------------------------------------------------------------------------------------ partitions and mounts
def regions(sfdisk_json: Optional[str], image_size: int) -> List[Dict[str, Any]]:
    """Pure: the byte ranges that may hold a file system.

    ``sfdisk_json`` is ``sfdisk --json IMAGE``'s output, or None when the image has no partition table (then
    the whole image is one region, number 0). GPT and MBR alike; extended MBR partitions are skipped (their
    logical partitions are listed on their own). Each region: ``number``, ``start`` and ``size`` in bytes,
    ``type`` (the table's partition type, "" for the whole image).
    """
    if sfdisk_json is None:
        return [dict(number=0, start=0, size=image_size, type='', table='none')]
    table = json.loads(sfdisk_json)['partitiontable']
    sector = int(table.get('sectorsize') or 512)
    out = []
    for i, p in enumerate(table.get('partitions') or []):
        ptype = str(p.get('type', '')).lower()
        if ptype in EXTENDED_TYPES:
            continue
        node = str(p.get('node', ''))
        digits = ''
        while node and node[-1].isdigit():
            digits = node[-1] + digits
            node = node[:-1]
        number = int(digits) if digits else i + 1
        start, size = int(p['start']) * sector, int(p['size']) * sector
        if start + size > image_size:
            size = max(0, image_size - start)
        if size > 0:
            out.append(dict(number=number, start=start, size=size, type=ptype, table=table.get('label', '')))
    return out


def parse_blkid(text: str) -> Dict[str, str]:
    """Pure: ``blkid -p -o export`` output as a dict (TYPE, LABEL, UUID, USAGE, ...)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if sep:
            out[key.strip()] = value.strip()
    return out


def mount_options(fstype: Optional[str]) -> Optional[str]:
    """Pure: the read-only mount options for a file system type, or None when it is not supported."""
    return MOUNT_OPTIONS.get(fstype or '')


def describe(fs: Dict[str, Any]) -> str:
    """Pure: one file system for messages: ``partition 2 (xfs, label 'root', 512 MiB)``."""
    where = 'the whole image' if fs['number'] == 0 else 'partition %d' % fs['number']
    what = fs.get('fstype') or 'no file system found'
    if fs.get('label'):
        what += ", label '%s'" % fs['label']
    return '%s (%s, %d MiB)' % (where, what, fs['size'] // 1048576)


def choose_filesystem(filesystems: Sequence[Dict[str, Any]], partition: Optional[int],
                      missing: Callable[[Dict[str, Any]], List[str]]) -> Dict[str, Any]:
    """Pure (given ``missing``): the mounted file system to restore from.

    ``partition`` (a number; 0 is a file system without a partition table) picks one; without it, the one
    mounted file system that holds every requested path (``missing(fs)``: the requested paths it lacks).
    Raises RestoreError naming every file system found when there is no such choice, and the paths that
    none of them holds.
    """
    mounted = [f for f in filesystems if f.get('mounted')]
    listing = '; '.join(describe(f) for f in filesystems) or 'nothing'
    if partition is not None:
        for f in filesystems:
            if f['number'] == partition:
                if not f.get('mounted'):
                    raise RestoreError('%s cannot be mounted: %s' % (describe(f), f.get('problem') or 'unsupported'))
                return f
        raise RestoreError('there is no partition %d; the image holds: %s' % (partition, listing))
    if not mounted:
        raise RestoreError('no supported file system in the image (supported: %s); it holds: %s'
                           % (', '.join(sorted(MOUNT_OPTIONS)), listing))
    if len(mounted) == 1:
        return mounted[0]
    lacking = [(f, missing(f)) for f in mounted]
    holding = [f for f, lacks in lacking if not lacks]
    if len(holding) == 1:
        return holding[0]
    if not holding:
        raise RestoreError(nowhere_message(lacking, listing))
    raise RestoreError('the requested paths exist in %d file systems (%s); set partition'
                       % (len(holding), ', '.join(describe(f) for f in holding)))


def nowhere_message(lacking: Sequence[Tuple[Dict[str, Any], List[str]]], listing: str) -> str:
    """Pure: why no mounted file system holds every requested path, given each one's (fs, paths it lacks).

    A path that no file system holds is named as such (no partition can help); otherwise each file system
    is named with what it lacks, and the paths must be restored in separate runs, each with its partition.
    """
    absent = [path for path in lacking[0][1] if all(path in lacks for _f, lacks in lacking)]
    if absent:
        return '%s: no such file or directory in the file system, nor in any other of the image (it holds: %s)' % (
            ', '.join(absent), listing)
    return ('no single file system holds every requested path (%s); restore them in separate runs, each with '
            'its partition' % '; '.join('%s lacks %s' % (describe(f), ', '.join(lacks)) for f, lacks in lacking))


# --------------------------------------------------------------------------------------- cleanup, by path
def _unescape_mount(field: str) -> str:
    """Pure: /proc/mounts writes space, tab, newline and backslash as octal escapes."""
    out, i = '', 0
    while i < len(field):
        if field[i] == '\\' and len(field) >= i + 4 and field[i + 1:i + 4].isdigit():
            out += chr(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out += field[i]
            i += 1
    return out


def _under(path: str, root: str) -> bool:
    root = root.rstrip('/')
    return path == root or path.startswith(root + '/')


def mounts_under(proc_mounts: str, root: str) -> List[str]:
    """Pure: the mount points in ``/proc/mounts`` text at or below ``root``, deepest first (unmount order)."""
    found = []
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            point = _unescape_mount(fields[1])
            if _under(point, root):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count('/'), p))


def loops_under(losetup_json: str, root: str) -> List[str]:
    """Pure: the loop devices (``losetup --list --json``) whose backing file is at or below ``root``."""
    if not losetup_json.strip():
        return []
    out = []
    for dev in json.loads(losetup_json).get('loopdevices') or []:
        back = dev.get('back-file') or ''
        if back.endswith(' (deleted)'):
            back = back[:-len(' (deleted)')]
        if back and _under(back, root):
            out.append(dev['name'])
    return sorted(out)


# ---------------------------------------------------------------------------------------------- the I/O
class Exposure:
    """A snapshot exported into ``workdir`` and its file systems mounted read-only under ``workdir/mnt``.

    ``teardown()`` (also :func:`cleanup` for a run that was killed) unmounts, detaches and removes everything.
    """

    def __init__(self, workdir: str, runner, timeout: int):
        self.workdir = workdir
        self.runner = runner
        self.timeout = timeout
        self.image_file = os.path.join(workdir, IMAGE_FILE)
        self.filesystems = []  # type: List[Dict[str, Any]]

    def run(self, argv: List[str], what: str, ok=(0,), stdin_data=None) -> str:
        rc, out, err = self.runner(argv, self.timeout, stdin_data)
        if rc not in ok:
            raise CommandError('%s failed' % what, cmd=argv, rc=rc, stderr=err)
        return out

    def partition_table(self) -> Optional[str]:
        """``sfdisk --json`` of the image, or None when it has no partition table."""
        rc, out, err = self.runner(['sfdisk', '--json', self.image_file], self.timeout)
        if rc == 0 and out.strip():
            return out
        if 'does not contain a recognized partition table' in err or (rc == 0 and not out.strip()):
            return None
        raise CommandError('reading the partition table failed', cmd=['sfdisk', '--json', self.image_file],
                           rc=rc, stderr=err)

    def probe(self) -> List[Dict[str, Any]]:
        """Every region of the image with its file system type (``blkid``) and mount options."""
        size = os.path.getsize(self.image_file)
        found = []
        for reg in regions(self.partition_table(), size):
            rc, out, err = self.runner(['blkid', '-p', '-o', 'export', '-O', str(reg['start']), '-S', str(reg['size']),
                                        self.image_file], self.timeout)
            tags = parse_blkid(out) if rc == 0 else {}
            fs = dict(reg, fstype=tags.get('TYPE', ''), label=tags.get('LABEL', ''), uuid=tags.get('UUID', ''),
                      mounted=False, problem='')
            fs['options'] = mount_options(fs['fstype'])
            if rc not in (0, 2):
                fs['problem'] = 'blkid rc=%s: %s' % (rc, err.strip()[-300:])
            elif not fs['fstype']:
                fs['problem'] = 'no file system signature'
            elif fs['options'] is None:
                fs['problem'] = 'file system %s is not supported' % fs['fstype']
            found.append(fs)
        self.filesystems = found
        return found

    def mount_all(self) -> None:
        """A read-only loop device and a read-only mount for every supported file system."""
        for fs in self.filesystems:
            if fs['options'] is None:
                continue
            point = os.path.join(self.workdir, 'mnt', 'p%d' % fs['number'])
            os.makedirs(point, mode=0o700)
            dev = self.run(['losetup', '--read-only', '--offset', str(fs['start']), '--sizelimit', str(fs['size']),
                            '--find', '--show', self.image_file], 'attaching a read-only loop device').strip()
            fs['device'] = dev
            try:
                self.run(['mount', '-t', fs['fstype'], '-o', fs['options'], dev, point],
                         'mounting %s read-only' % describe(fs))
            except CommandError as e:
                fs['problem'] = str(e)
                self.run(['losetup', '--detach', dev], 'detaching ' + dev)
                fs.pop('device')
                continue
            fs['mountpoint'] = point
            fs['mounted'] = True

    def teardown(self) -> List[str]:
        """Unmount, detach, remove the image and the mount points (not the work directory); what it did."""
        return cleanup(self.workdir, self.runner, self.timeout, remove_workdir=False)


def cleanup(workdir: str, runner, timeout: int, remove_workdir: bool = True) -> List[str]:
    """Unmount every mount below ``workdir``, detach every loop device backed by a file below it, and remove it
    (with ``remove_workdir=False`` only the exported image and the mount points: an archive made there stays).

    Works from the system's own tables (``/proc/mounts``, ``losetup --list``), so it also cleans up after a run
    that was killed. Returns the actions taken; raises CommandError when something stays behind.
    """
    done = []
    with open('/proc/mounts') as f:
        mounts = mounts_under(f.read(), workdir)
    for point in mounts:
        rc, _out, err = runner(['umount', point], timeout)
        if rc != 0:
            rc, _out, err = runner(['umount', '--lazy', point], timeout)
            if rc != 0:
                raise CommandError('unmounting %s failed' % point, cmd=['umount', point], rc=rc, stderr=err)
        done.append('umount ' + point)
    rc, out, err = runner(['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE'], timeout)
    if rc != 0:
        raise CommandError('listing loop devices failed', cmd=['losetup', '--list', '--json'], rc=rc, stderr=err)
    for dev in loops_under(out, workdir):
        rc, _out, err = runner(['losetup', '--detach', dev], timeout)
        if rc != 0:
            raise CommandError('detaching %s failed' % dev, cmd=['losetup', '--detach', dev], rc=rc, stderr=err)
        done.append('losetup --detach ' + dev)
    targets = [workdir] if remove_workdir else [os.path.join(workdir, 'mnt'), os.path.join(workdir, IMAGE_FILE)]
    for path in targets:
        if os.path.isdir(path) and not os.path.islink(path):
            _remove_tree(path)
            done.append('removed ' + path)
        elif os.path.lexists(path):
            os.unlink(path)
            done.append('removed ' + path)
    return done


def export_snapshot(argv: List[str], target: str, timeout: float, poll: float = 1.0) -> float:
    """Run ``rbd export ... TARGET`` and wait for it; kill it (and its group) when the file has not grown for
    ``timeout`` seconds. Returns the seconds it took; raises CommandError when it failed or stalled."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as errfile:
        proc = spawn(argv, DEVNULL, DEVNULL, errfile)
        last, progress = None, time.monotonic()
        try:
            while wait_for(proc, poll) is None:
                try:
                    st = os.stat(target)
                    now = (st.st_size, st.st_blocks)
                except OSError:
                    now = None
                if now != last:
                    last, progress = now, time.monotonic()
                elif time.monotonic() - progress > timeout:
                    kill_group(proc)
                    proc.wait()
                    raise CommandError('rbd export made no progress for %d s (killed)' % timeout, cmd=argv, rc=-9)
        finally:
            kill_group(proc)
        errfile.seek(0)
        err = errfile.read().decode('utf-8', 'replace')
    if proc.returncode != 0:
        raise CommandError('rbd export failed', cmd=argv, rc=proc.returncode, stderr=err)
    return time.monotonic() - start


def file_facts(root: str, rel: str) -> Dict[str, Any]:
    """What a restored entry is (below ``root``, not following a final symlink): type, mode, mtime, size,
    sha256 of a regular file, target of a symlink."""
    full = os.path.join(root, rel)
    st = os.lstat(full)
    out = dict(path=rel, mode='%04o' % stat.S_IMODE(st.st_mode), mtime=int(st.st_mtime), uid=st.st_uid,
               gid=st.st_gid, size=st.st_size)
    if stat.S_ISREG(st.st_mode):
        out['type'] = 'file'
        h = hashlib.sha256()
        with open(full, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
        out['sha256'] = h.hexdigest()
    elif stat.S_ISDIR(st.st_mode):
        out['type'] = 'directory'
    elif stat.S_ISLNK(st.st_mode):
        out['type'] = 'link'
        out['target'] = os.readlink(full)
    else:
        out['type'] = 'other'
    return out


def _remove_tree(path: str) -> None:
    """rm -rf that never crosses into a mount point (anything still mounted below raises instead)."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            if os.path.islink(full):
                os.unlink(full)
            else:
                if os.path.ismount(full):
                    raise RestoreError('%s is still mounted; not removing it' % full)
                os.rmdir(full)
    os.rmdir(path)
