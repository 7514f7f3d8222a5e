"""Stream speed of paramiko against OpenSSH: N MiB from the test bed's source sshd to this host.

The README's "paramiko and jmespath" section quotes this. It answers one question: could the data
streams of rbd_diff_transfer go through paramiko (as Ansible's paramiko connection does) instead of the
ssh binary? Each case reads `dd if=/dev/zero bs=1M count=N` run on the far side to the end of its
stdout; zeros cost the sender nothing and ssh does not compress, so the cipher and the ssh
implementation are what is measured: wall time, and the CPU time of the receiving side (the ssh process, or
this Python process for paramiko). Cases alternate, median of --runs.

    bash tests/testbed/testbed.sh up && . /tmp/rbd-testbed/env.sh
    .venv/bin/python bench/ssh_stream.py            # 512 MiB, 3 runs per case
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import paramiko

CHUNK = 1 << 20


def openssh(host, port, user, mib, cipher=None):
    cmd = ['ssh', '-p', str(port), '-o', 'BatchMode=yes', '-o', 'Compression=no',
           '-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'),
           '-o', 'StrictHostKeyChecking=yes']
    if cipher:
        cmd += ['-c', cipher]
    cmd += ['%s@%s' % (user, host), 'dd if=/dev/zero bs=1M count=%d status=none' % mib]
    start = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as p:
        n = 0
        while True:
            b = p.stdout.read(CHUNK)
            if not b:
                break
            n += len(b)
    if p.returncode or n != mib * CHUNK:
        raise RuntimeError('ssh: rc=%s, %d bytes' % (p.returncode, n))
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic() - start, cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime


def with_paramiko(host, port, user, mib, cipher=None):
    start = time.monotonic()
    cpu0 = time.process_time()  # this process, the transport thread included
    client = paramiko.SSHClient()
    client.load_host_keys('%s/ssh/known_hosts' % os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'))
    disabled = {}
    if cipher:
        disabled = {'ciphers': [c for c in paramiko.Transport._preferred_ciphers if c != cipher]}
    client.connect(host, port=port, username=user, key_filename=os.path.expanduser('~/.ssh/id_ed25519'),
                   look_for_keys=False, allow_agent=False, disabled_algorithms=disabled)
    try:
        used = client.get_transport().remote_cipher
        stdout = client.exec_command('dd if=/dev/zero bs=1M count=%d status=none' % mib)[1]
        channel = stdout.channel
        n = 0
        while True:
            b = channel.recv(CHUNK)
            if not b:
                break
            n += len(b)
        rc = channel.recv_exit_status()
    finally:
        client.close()
    if rc or n != mib * CHUNK:
        raise RuntimeError('paramiko: rc=%s, %d bytes' % (rc, n))
    return time.monotonic() - start, time.process_time() - cpu0, used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--host', default=os.environ.get('SRC_HOST', '127.0.0.2'))
    ap.add_argument('--port', type=int, default=int(os.environ.get('SSH_PORT', '2222')))
    ap.add_argument('--user', default='root')
    ap.add_argument('--mib', type=int, default=512)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--json', help='write every run here')
    ap.add_argument('--paramiko-rekey-off', action='store_true',
                    help="raise paramiko's own rekey limit (2**29 bytes) out of reach: the workaround of paramiko "
                         "issue #822, to measure its throughput without the rekey stall")
    args = ap.parse_args()
    if args.paramiko_rekey_off:
        paramiko.packet.Packetizer.REKEY_BYTES = paramiko.packet.Packetizer.REKEY_PACKETS = 1 << 40
    cases = [
        ('paramiko %s (its default)' % paramiko.Transport._preferred_ciphers[0],
         lambda: with_paramiko(args.host, args.port, args.user, args.mib)),
        ('paramiko aes128-gcm@openssh.com',
         lambda: with_paramiko(args.host, args.port, args.user, args.mib, 'aes128-gcm@openssh.com')),
        ('OpenSSH default cipher', lambda: openssh(args.host, args.port, args.user, args.mib) + (None,)),
        ('OpenSSH -c aes128-gcm@openssh.com (the role\'s cipher)',
         lambda: openssh(args.host, args.port, args.user, args.mib, 'aes128-gcm@openssh.com') + (None,)),
    ]
    names = [case[0] for case in cases]
    times = {name: [] for name in names}
    cpus = {name: [] for name in names}
    failures = {name: [] for name in names}
    used = {}
    for r in range(args.runs):
        order = cases if r % 2 == 0 else list(reversed(cases))
        for name, fn in order:
            # a failed run (paramiko's rekey timeout, see the README) is counted and run again
            for attempt in range(3):
                start = time.monotonic()
                try:
                    seconds, cpu, cipher = fn()
                except (paramiko.SSHException, RuntimeError, OSError) as e:
                    failures[name].append('%s after %.1f s (attempt %d)' % (e, time.monotonic() - start, attempt + 1))
                    continue
                times[name].append(seconds)
                cpus[name].append(cpu)
                if cipher:
                    used[name] = cipher
                break
    ssh_version = subprocess.run(['ssh', '-V'], capture_output=True, text=True, check=False).stderr.strip()
    print('%d MiB from %s:%d, %d runs per case, paramiko %s (rekey after %d bytes), %s, load %.1f'
          % (args.mib, args.host, args.port, args.runs, paramiko.__version__, paramiko.packet.Packetizer.REKEY_BYTES,
             ssh_version, os.getloadavg()[0]))
    base = statistics.median(times[names[0]])
    for name in names:
        med = statistics.median(times[name])
        print('%-55s median %5.2f s %4.0f MB/s x%.2f, receiver CPU %4.2f s (runs %s)%s' % (
            name, med, args.mib * CHUNK / med / 1e6, base / med, statistics.median(cpus[name]),
            ', '.join('%.2f' % t for t in times[name]),
            '  negotiated %s' % used[name] if name in used else ''))
        for f in failures[name]:
            print('    failed run: %s' % f)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(mib=args.mib, paramiko=paramiko.__version__, openssh=ssh_version, times=times, cpu=cpus,
                           failures=failures, paramiko_rekey_bytes=paramiko.packet.Packetizer.REKEY_BYTES), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
