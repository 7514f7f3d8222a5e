"""Pull mode with a read-only cephx user on the source and an ssh key bound to the rbd-ssh-guard forced command."""

import os
import subprocess

from conftest import REPO, random_data
from test_modules import snap

MiB = 1 << 20


def _guarded_key(bed):
    ssh_dir = os.path.join(bed.dir, 'ssh')
    key = os.path.join(ssh_dir, 'guard_ed25519')
    if not os.path.exists(key):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    pub = open(key + '.pub').read().strip()
    line = ('command="env RBD_GUARD_LIB=%s %s",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty %s'
            % (REPO / 'plugins' / 'module_utils', REPO / 'files' / 'rbd-ssh-guard', pub))
    auth = os.path.join(ssh_dir, 'authorized_keys')
    # sshd takes the first line of a key: drop any that names another checkout's guard
    lines = [ln for ln in open(auth).read().splitlines() if pub not in ln] + [line]
    with open(auth + '.new', 'w') as f:        # other tests log in meanwhile: never a half-written file
        f.write(''.join(ln + '\n' for ln in lines))
    os.chmod(auth + '.new', 0o600)
    os.replace(auth + '.new', auth)
    return key


def _read_only_user(bed, pool):
    keyring = os.path.join(bed.dir, 'source', 'ceph.client.backup-ro.keyring')
    out = bed.src.run('auth', 'get-or-create', 'client.backup-ro', 'mon', 'profile rbd',
                      'osd', 'profile rbd-read-only', tool='ceph').stdout
    with open(keyring, 'wb') as f:
        f.write(out)
    return keyring


def test_pull_with_read_only_user_and_forced_command(bed, pools):
    key = _guarded_key(bed)
    keyring = _read_only_user(bed, pools)
    bed.src.create(pools, 'vm', 16 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(2 * MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-a')
    ro = dict(conf=bed.src.conf, keyring=keyring, user='backup-ro')

    args = dict(source_pool=pools, images=['vm'], compression='zstd')
    args.update(bed.pull_args())
    args['remote'].update(key=key, ceph=ro)
    r = bed.dst_module('rbd_diff_transfer', args)
    assert r['images'][0]['action'] == 'initial'
    # the guard cannot start a librbd helper: the CLI, said once
    assert '[WARNING]: no librbd helper on the other host' in r['_warnings'], r['_warnings']
    assert 'rbd-ssh-guard: refused' in r['_warnings'] and 'UEsDB' not in r['_warnings'], r['_warnings']   # why, briefly
    bed.src.write(pools, 'vm', 4 * MiB, random_data(MiB, seed=2))
    snap(bed, pools, 'vm', 'backup-b')
    args['compression'] = 'none'
    args['remote']['helpers'] = False          # the CLI from the start, quietly
    r = bed.dst_module('rbd_diff_transfer', args)
    assert r['images'][0]['action'] == 'incremental'
    assert 'librbd helper' not in r['_warnings'], r['_warnings']
    assert bed.src.export_sha(pools, 'vm', 'backup-b') == bed.dst.export_sha(pools, 'vm', 'backup-b')

    ssh = ['ssh', '-p', '2222', '-i', key, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
           '-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % bed.dir, 'root@' + bed.env['SRC_HOST']]
    # the forced command refuses anything else ...
    refused = subprocess.run(ssh + ['rbd --conf %s --id backup-ro --keyring %s snap rm --pool %s --image vm '
                                    '--snap backup-a' % (bed.src.conf, keyring, pools)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 126 and 'refused' in refused.stderr
    assert subprocess.run(ssh + ['id'], capture_output=True, timeout=60, check=False).returncode == 126
    # ... and the cephx user cannot write even where the guard would let a command through
    denied = subprocess.run(['rbd', '--conf', bed.src.conf, '--id', 'backup-ro', '--keyring', keyring, 'snap',
                             'create', '--pool', pools, '--image', 'vm', '--snap', 'evil'],
                            capture_output=True, text=True, timeout=60, check=False)
    assert denied.returncode != 0 and 'evil' not in bed.src.snaps(pools, 'vm')
