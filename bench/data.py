"""The data the bench writes (with librbd, never timed): unique random bytes, or partly compressible text."""

import collections
import functools
import os
import time
from typing import Iterable, Tuple

from .cluster import Cluster, librbd
from .common import MiB

ZERO_RUN = 64 * 1024


def log_text(n: int) -> bytes:
    """n bytes of nginx-like access log lines (compressible, not constant)."""
    lines = []
    i = 0
    size = 0
    while size < n:
        line = ('2026-11-26T03:%02d:%02d.%06dZ web-%02d nginx[%d]: 10.1.%d.%d - - "GET /api/v1/items/%d?page=%d '
                'HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.%03d\n'
                % (i // 60 % 60, i % 60, (i * 7919) % 1000000, i % 16, 1000 + i % 97, i % 256, (i * 13) % 256,
                   i * 31 % 100000, i % 50, (200, 200, 200, 304, 404)[i % 5], 512 + i * 17 % 9000, i % 1000))
        lines.append(line)
        size += len(line)
        i += 1
    return ''.join(lines).encode()[:n]


@functools.lru_cache(maxsize=1)
def _text_per_mib() -> bytes:
    return log_text(MiB - MiB // 2 - ZERO_RUN)


def make_chunk(n: int, kind: str, salt: int = 0) -> bytes:
    """n bytes (a multiple of 1 MiB) of fresh data.

    random:        per MiB, unique random bytes with one 64 KiB zero run (inside a 4 MiB object, so the
                   extent lists of both sides stay equal after import-diff re-sparsifies the zeros).
    compressible:  per MiB, 256 KiB random, 64 KiB zeros, 448 KiB log text, 256 KiB random (zstd -1: ~0.55).
    """
    assert n % MiB == 0
    if kind == 'random':
        buf = bytearray(os.urandom(n))
        for m in range(n // MiB):
            z = ((m + salt) * 37 % 15) * ZERO_RUN
            buf[m * MiB + z:m * MiB + z + ZERO_RUN] = bytes(ZERO_RUN)
        return bytes(buf)
    if kind == 'compressible':
        text = _text_per_mib()
        rnd = os.urandom(n // 2)
        parts = []
        q = MiB // 4
        zeros = bytes(ZERO_RUN)
        for m in range(n // MiB):
            # the zero run never reaches the end of a 4 MiB object: import-diff would truncate the
            # object there and the extents check (rbd diff of both sides) would then differ
            parts += [rnd[2 * m * q:(2 * m + 1) * q], zeros, text, rnd[(2 * m + 1) * q:(2 * m + 2) * q]]
        return b''.join(parts)
    raise ValueError(kind)


def write_fresh(cluster: Cluster, targets: Iterable[Tuple[str, str]], size: int, kind: str, offset: int = 0,
                chunk: int = 16 * MiB, inflight: int = 8) -> None:
    """Write the same fresh `size` bytes at `offset` to every (pool, image) of `targets` (librbd aio)."""
    ios, imgs = [], []
    try:
        for pool, image in targets:
            io = cluster.cluster.open_ioctx(pool)
            ios.append(io)
            imgs.append(librbd.Image(io, image))
        pending = collections.deque()
        errors = []

        def drain(limit):
            while len(pending) > limit:
                comp, _buf = pending.popleft()
                comp.wait_for_complete_and_cb()
                r = comp.get_return_value()
                if r < 0:
                    errors.append(r)

        salt = int(time.time())
        for off in range(offset, offset + size, chunk):
            n = min(chunk, offset + size - off)
            buf = make_chunk(n, kind, salt + off // MiB)
            for img in imgs:
                pending.append((img.aio_write(buf, off, lambda c: None), buf))
            drain(inflight)
        drain(0)
        if errors:
            raise RuntimeError('aio_write failed: %s' % errors[:3])
    finally:
        for img in imgs:
            img.close()
        for io in ios:
            io.close()
