#!/usr/bin/python3
"""Create (or change) the scenario's test images with python3-rbd.

Run on the source host by prepare.yml (create the images that are missing, idempotently) and by
mutate.yml (--mutate: overwrite 256 KiB of every image at a random offset). All data are fresh
random bytes (os.urandom): `rbd bench` writes constant bytes, which would prove nothing. Prints
{"changed": [names]} as JSON.
"""

import argparse
import json
import os
import random

import rados
import rbd

MIB = 1 << 20
ALIGN = 4096


def aligned(n):
    return n - n % ALIGN


def fill(img, size):
    """Random data in a few places, holes in between, and a half-random/half-zero chunk."""
    for off in (0, aligned(size // 3), aligned(size - MIB)):
        img.write(os.urandom(MIB), off)
    half = MIB // 2
    img.write(os.urandom(half) + b'\0' * half, aligned(size // 2))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--conf', required=True)
    p.add_argument('--keyring', required=True)
    p.add_argument('--id', default='admin')
    p.add_argument('--pool', required=True)
    p.add_argument('--images', required=True, help='JSON list of {name, size}')
    p.add_argument('--mutate', action='store_true')
    a = p.parse_args()
    images = json.loads(a.images)

    changed = []
    cluster = rados.Rados(conffile=a.conf, rados_id=a.id,
                          conf={'keyring': a.keyring, 'rados_osd_op_timeout': '60'})
    cluster.connect(timeout=60)
    try:
        with cluster.open_ioctx(a.pool) as io:
            existing = set(rbd.RBD().list(io))
            for spec in images:
                name, size = spec['name'], int(spec['size'])
                if name not in existing:
                    rbd.RBD().create(io, name, size, old_format=False)
                    with rbd.Image(io, name) as img:
                        fill(img, size)
                    changed.append(name)
                elif a.mutate:
                    with rbd.Image(io, name) as img:
                        n = 256 * 1024
                        img.write(os.urandom(n), aligned(random.randrange(0, img.size() - n)))
                    changed.append(name)
    finally:
        cluster.shutdown()
    print(json.dumps({'changed': changed}))


if __name__ == '__main__':
    main()
