"""Constants and the rbd helper shared by the verify tests."""

import json
import os
import shlex
from pathlib import Path

import yaml

SCENARIO = Path(__file__).resolve().parents[1]
VARS = yaml.safe_load((SCENARIO / 'vars.yml').read_text())
POOL = os.environ.get('MOLECULE_RBD_POOL') or 'mol-rbd'
IMAGES = [i['name'] for i in VARS['mol_images']]
PREFIX = 'backup-'            # the role's default rbd_replicate_snapshot_prefix
IMPORTING = 'ceph_rbd_backup.importing'


class Side:
    """One cluster as seen from its own host: runs rbd there with that cluster's options."""

    def __init__(self, host, ceph):
        self.host, self.ceph = host, ceph

    def cmd(self, tool, *args):
        base = [tool, '--conf', self.ceph['conf'], '--keyring', self.ceph['keyring'],
                '--id', self.ceph.get('user') or 'admin']
        return ' '.join(shlex.quote(a) for a in base + list(args))

    def rbd_json(self, *args):
        return json.loads(self.host.check_output(self.cmd('rbd', *(args + ('--format', 'json')))) or 'null')

    def images(self):
        return sorted(self.rbd_json('ls', '--pool', POOL) or [])

    def snaps(self, image):
        """Snapshot names, oldest first (by snapshot id)."""
        snaps = self.rbd_json('snap', 'ls', '--pool', POOL, '--image', image) or []
        return [s['name'] for s in sorted(snaps, key=lambda s: s['id'])]

    def our_snaps(self, image):
        return [s for s in self.snaps(image) if s.startswith(PREFIX)]

    def meta(self, image):
        return self.rbd_json('image-meta', 'list', '--pool', POOL, '--image', image) or {}

    def export_sha(self, image, snap):
        """sha256 of ``rbd export --snap SNAP - `` computed on the host itself."""
        pipeline = self.cmd('rbd', 'export', '--no-progress', '--pool', POOL, '--image', image,
                            '--snap', snap, '-') + ' | sha256sum'
        out = self.host.check_output('bash -o pipefail -c %s' % shlex.quote(pipeline))
        return out.split()[0]
