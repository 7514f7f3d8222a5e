# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import random
import stat
import struct
import sys
import threading
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _verify as V
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError


# -- normalize_extents / extents_digest / clip ---------------------------------------------------

def test_normalize_extents_tuples_lists_dicts():
    raw = [
        (4096, 10, True),
        [0, 5, False],
        {'offset': '8192', 'length': '3', 'exists': 'true'},
        {'offset': 100, 'length': 2, 'exists': 'false'},
        {'offset': 200, 'length': 1},             # exists defaults to True
        (300, 4),                                 # exists defaults to True
        ['400', '5', 'True'],
        (500, 6, 'FALSE'),
        (600, 1, 1),                              # only True / "true" count as existing
    ]
    assert V.normalize_extents(raw) == [
        (0, 5, False), (100, 2, False), (200, 1, True), (300, 4, True), (400, 5, True),
        (500, 6, False), (600, 1, False), (4096, 10, True), (8192, 3, True)]


def test_normalize_extents_json_round_trip_and_empty():
    ext = [(0, 5, False), (4096, 10, True)]
    assert V.normalize_extents(json.loads(json.dumps(ext))) == ext
    assert V.normalize_extents(None) == [] and V.normalize_extents([]) == []


def test_extents_digest_stable_and_order_independent():
    a = [(0, 5, False), (4096, 10, True), (8192, 1, True)]
    d = V.extents_digest(a)
    canon = json.dumps([[0, 5, False], [4096, 10, True], [8192, 1, True]], separators=(',', ':'))
    assert d == hashlib.sha256(canon.encode()).hexdigest()
    assert V.extents_digest(list(reversed(a))) == d
    assert V.extents_digest([{'offset': str(o), 'length': l, 'exists': str(x).lower()} for o, l, x in a]) == d
    assert V.extents_digest(json.loads(json.dumps(a))) == d


def test_extents_digest_sensitive():
    a = [(0, 5, False), (4096, 10, True)]
    d = V.extents_digest(a)
    assert V.extents_digest([(0, 5, True), (4096, 10, True)]) != d
    assert V.extents_digest([(0, 6, False), (4096, 10, True)]) != d
    assert V.extents_digest([(1, 5, False), (4096, 10, True)]) != d
    assert V.extents_digest(a[:1]) != d
    assert V.extents_digest([]) == hashlib.sha256(b'[]').hexdigest()


def test_clip():
    ext = [(0, 10, True), (5, 100, False), (99, 5, True), (100, 1, True), (200, 4, True)]
    assert V.clip(ext, 100) == [(0, 10, True), (5, 95, False), (99, 1, True)]
    assert V.clip(ext, 0) == []
    assert V.clip([], 10) == []


# -- export_ranges -----------------------------------------------------------------------------------

def chunked(data, size):
    return (data[i:i + size] for i in range(0, len(data), size))


def collect(pieces):
    """{(off, len): bytes} in first-seen order, checking extents come in one contiguous run each."""
    out = {}
    order = []
    for off, length, data in pieces:
        key = (off, length)
        if key not in out:
            assert not order or order[-1] != key
            order.append(key)
            out[key] = b''
        else:
            assert order[-1] == key, 'extent %r came back after another one' % (key,)
        out[key] += data
    return order, out


EXTENTS = [(0, 1, True), (3, 10, True), (13, 1, False), (100, 4096, True), (5000, 3, True), (9000, 8191, True),
           (20000, 0, True), (30000, 2768, True)]     # ends exactly at 32768


@pytest.mark.parametrize('chunk', [1, 7, 4096, 1 << 20])
def test_export_ranges_matches_slicing(chunk):
    rng = random.Random(chunk)
    image = bytes(rng.getrandbits(8) for _i in range(32768))
    order, got = collect(V.export_ranges(chunked(image, chunk), EXTENTS))
    expected = [(o, l) for o, l, _x in EXTENTS if l > 0]
    assert order == expected
    for (o, l) in expected:
        assert got[(o, l)] == image[o:o + l]


def test_export_ranges_random_chunk_sizes_and_extents():
    rng = random.Random(42)
    image = os.urandom(50000)
    for _i in range(50):
        exts, pos = [], 0
        while True:
            pos += rng.randint(0, 3000)
            length = rng.randint(1, 5000)
            if pos + length > len(image):
                break
            exts.append((pos, length, True))
            pos += length
        chunks, p = [], 0
        while p < len(image):
            n = rng.randint(1, 9000)
            chunks.append(image[p:p + n])
            p += n
        order, got = collect(V.export_ranges(iter(chunks), exts))
        assert order == [(o, l) for o, l, _x in exts]
        for o, l, _x in exts:
            assert got[(o, l)] == image[o:o + l]


def test_export_ranges_extent_past_end_of_stream_is_partial():
    got = list(V.export_ranges([b'abcdef'], [(4, 10, True), (20, 2, True)]))
    assert got == [(4, 10, b'ef')]


# -- DataHasher -------------------------------------------------------------------------------------

def data_digest(size, pieces):
    h = V.DataHasher(size)
    for off, length, chunks in pieces:
        h.begin(off, length)
        for c in chunks:
            h.update(c)
    return h.hexdigest(), h.bytes


def test_data_hasher_exact_value_and_chunking_independent():
    d, n = data_digest(100, [(0, 4, [b'ab', b'cd']), (10, 2, [b'xy'])])
    ref = hashlib.sha256(b'ceph_rbd.backup data v2 size=100\n')
    ref.update(b'abcd' + struct.pack('<QQ', 0, 4) + b'xy' + struct.pack('<QQ', 10, 2))
    assert d == ref.hexdigest() and n == 6
    assert data_digest(100, [(0, 4, [b'a', b'bcd']), (10, 2, [b'x', b'y'])])[0] == d


def test_data_hasher_adjacent_extents_hash_like_one_merged_extent():
    # a stream's records and rbd diff's extents may split the same bytes differently
    merged = data_digest(100, [(0, 6, [b'abcdef']), (10, 2, [b'xy'])])[0]
    assert data_digest(100, [(0, 2, [b'ab']), (2, 4, [b'cd', b'ef']), (10, 2, [b'xy'])])[0] == merged
    assert data_digest(100, [(0, 2, [b'ab']), (3, 3, [b'def']), (10, 2, [b'xy'])])[0] != merged   # a gap
    # zeros() is the same as zero bytes
    h = V.DataHasher(100)
    h.begin(0)
    h.zeros(5)
    assert h.hexdigest() == data_digest(100, [(0, 5, [bytes(5)])])[0] and h.bytes == 5


def test_data_hasher_detects_changes():
    base = data_digest(100, [(0, 4, [b'abcd']), (10, 2, [b'xy'])])[0]
    assert data_digest(100, [(0, 4, [b'abce']), (10, 2, [b'xy'])])[0] != base     # one byte flipped
    assert data_digest(101, [(0, 4, [b'abcd']), (10, 2, [b'xy'])])[0] != base     # size changed
    assert data_digest(100, [(1, 4, [b'abcd']), (10, 2, [b'xy'])])[0] != base     # offset moved
    assert data_digest(100, [(0, 4, [b'abcd'])])[0] != base                        # extent missing


def test_data_hasher_every_single_bit_flip_detected():
    rng = random.Random(3)
    data = bytes(rng.getrandbits(8) for _i in range(64))
    base = data_digest(1 << 20, [(512, 64, [data])])[0]
    seen = {base}
    for i in range(64):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        d = data_digest(1 << 20, [(512, 64, [bytes(flipped)])])[0]
        assert d not in seen
        seen.add(d)


# -- digest_image end to end with a fake rbd --------------------------------------------------------

class FakeRunner:
    def __init__(self, info, diff):
        self.info, self.diff = info, diff
        self.calls = []

    def __call__(self, argv, timeout, stdin_data=None):
        self.calls.append(argv)
        if 'info' in argv:
            return 0, json.dumps(self.info), ''
        if 'diff' in argv:
            return 0, json.dumps(self.diff), ''
        return 1, '', 'unexpected %r' % argv


class FakeReader:
    def __init__(self, image, chunk=5):
        self.image, self.chunk = image, chunk

    def ranges(self, pool, namespace, image, snap, extents):
        for off, length, _x in extents:
            pos, end = off, off + length
            while pos < end:
                n = min(self.chunk, end - pos)
                yield off, length, self.image[pos:pos + n]
                pos += n


@pytest.fixture
def fake_rbd(tmp_path):
    def make(image, diff, rc=0, export_bytes=None):
        img = tmp_path / 'image.bin'
        img.write_bytes(image if export_bytes is None else export_bytes)
        script = tmp_path / 'fake-rbd'
        script.write_text('#!/bin/sh\ncat "%s"\necho fake-stderr >&2\nexit %d\n' % (img, rc))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        return Rbd(runner=FakeRunner(dict(size=len(image)), diff), binary=str(script), timeout=10)
    return make


def test_digest_image_data_export_and_reader_agree(fake_rbd):
    rng = random.Random(5)
    image = bytes(rng.getrandbits(8) for _i in range(100000))
    diff = [dict(offset=0, length=10, exists='true'), dict(offset=50000, length=60000, exists='true'),
            dict(offset=20000, length=3, exists='false')]
    rbd = fake_rbd(image, diff)
    via_export = V.digest_image(rbd, 'p', None, 'img', 's2', 'data', from_snapshot='s1')
    via_reader = V.digest_image(rbd, 'p', None, 'img', 's2', 'data', from_snapshot='s1',
                                reader=FakeReader(image))
    assert via_export['digest'] == via_reader['digest']
    # extents clipped to the size, in offset order
    assert via_export['extents'] == [[0, 10, True], [20000, 3, False], [50000, 50000, True]]
    assert via_export['bytes_read'] == 10 + 3 + 50000
    assert via_export['size'] == 100000 and via_export['from_snapshot'] == 's1'
    expected = V.DataHasher(100000)
    for o, l in ((0, 10), (20000, 3), (50000, 50000)):
        expected.begin(o, l)
        expected.update(image[o:o + l])
    assert via_export['digest'] == expected.hexdigest()
    # the destination reuses the source's extents: same digest
    dest = V.digest_image(rbd, 'p', None, 'img', 's2', 'data', extents=via_export['extents'])
    assert dest['digest'] == via_export['digest']
    # the diff call asked for the right range
    diff_argv = [a for a in rbd.runner.calls if 'diff' in a][0]
    assert diff_argv[diff_argv.index('--from-snap') + 1] == 's1'
    assert diff_argv[diff_argv.index('--snap') + 1] == 's2'


def test_digest_image_data_detects_flipped_byte(fake_rbd):
    image = bytes(range(256)) * 40
    diff = [dict(offset=0, length=len(image), exists='true')]
    a = V.digest_image(fake_rbd(image, diff), 'p', None, 'img', 's', 'data')['digest']
    flipped = bytearray(image)
    flipped[5000] ^= 0x80
    b = V.digest_image(fake_rbd(bytes(flipped), diff), 'p', None, 'img', 's', 'data')['digest']
    assert a != b


def test_digest_image_extents_method(fake_rbd):
    diff = [dict(offset=8, length=2, exists='true'), dict(offset=0, length=4, exists='false')]
    r = V.digest_image(fake_rbd(b'x' * 16, diff), 'p', None, 'img', 's', 'extents')
    assert r['digest'] == V.extents_digest([(0, 4, False), (8, 2, True)])
    assert r['bytes_read'] == 0 and r['extents'] == [[0, 4, False], [8, 2, True]]


def test_digest_image_full_method(fake_rbd):
    image = os.urandom(12345)
    r = V.digest_image(fake_rbd(image, []), 'p', None, 'img', 's', 'full')
    assert r['digest'] == hashlib.sha256(b'ceph_rbd.backup full v1 size=12345\n' + image).hexdigest()
    assert r['bytes_read'] == 12345 and 'extents' not in r


def test_digest_image_full_short_export_raises(fake_rbd):
    with pytest.raises(RbdError) as ei:
        V.digest_image(fake_rbd(b'x' * 100, [], export_bytes=b'x' * 99), 'p', None, 'img', 's', 'full')
    assert 'gave 99 bytes for a 100-byte snapshot' in str(ei.value)


def test_digest_image_export_failure_raises(fake_rbd):
    with pytest.raises(RbdError) as ei:
        V.digest_image(fake_rbd(b'x' * 100, [], rc=3), 'p', None, 'img', 's', 'full')
    assert ei.value.rc == 3 and 'fake-stderr' in str(ei.value) and 'p/img@s' in str(ei.value)


def test_digest_image_unknown_method(fake_rbd):
    with pytest.raises(ValueError):
        V.digest_image(fake_rbd(b'', []), 'p', None, 'img', 's', 'md5', extents=[])


def test_small_dense_images_are_read_in_process(fake_rbd):
    """Below EXPORT_MIN_BYTES the reader wins even on a dense image: an rbd export costs a process start."""
    big = V.EXPORT_MIN_BYTES
    assert V.read_with_export([(0, big, True)], big)
    assert not V.read_with_export([(0, big - 1, True)], big - 1)            # dense but small
    assert not V.read_with_export([(0, big, True)], 4 * big)                # large but sparse
    image = bytes(range(256)) * 400
    # the fake export gives other bytes: a digest of the image's own bytes proves the reader read it
    rbd = fake_rbd(image, [dict(offset=0, length=len(image), exists='true')], export_bytes=b'\xff' * len(image))
    got = V.digest_image(rbd, 'p', None, 'img', 's', 'data', reader=FakeReader(image))
    expected = V.DataHasher(len(image))
    expected.begin(0)
    expected.update(image)
    assert got['bytes_read'] == len(image) and 'fallback' not in got
    assert got['digest'] == expected.hexdigest()


def test_dense_extents_are_read_with_one_export(fake_rbd, monkeypatch):
    monkeypatch.setattr(V, 'EXPORT_MIN_BYTES', 0)    # the test image is small
    assert V.dense([(0, 50, True)], 100) and not V.dense([(0, 49, True)], 100)
    assert V.dense([(0, 30, True), (60, 20, False)], 100)     # zero extents are read too
    assert not V.dense([], 0)

    class Refuse:
        def ranges(self, *a):
            raise AssertionError('the in-process reader was used for a dense extent list')

    image = bytes(range(256)) * 400
    diff = [dict(offset=0, length=len(image) - 100, exists='true')]
    rbd = fake_rbd(image, diff)
    via_export = V.digest_image(rbd, 'p', None, 'img', 's', 'data', reader=Refuse())
    sparse = V.digest_image(rbd, 'p', None, 'img', 's', 'data', reader=FakeReader(image),
                            extents=[[0, 100, True]])
    assert sparse['bytes_read'] == 100
    expected = V.DataHasher(len(image))
    expected.begin(0)
    expected.update(image[:len(image) - 100])
    assert via_export['digest'] == expected.hexdigest()


class DyingReader(FakeReader):
    """Yields some chunks, then fails like a killed reader child."""

    def __init__(self, image, after, exc):
        FakeReader.__init__(self, image)
        self.after, self.exc = after, exc

    def ranges(self, pool, namespace, image, snap, extents):
        for i, piece in enumerate(FakeReader.ranges(self, pool, namespace, image, snap, extents)):
            if i == self.after:
                raise self.exc
            yield piece


@pytest.mark.parametrize('after', [0, 1, 3])
def test_a_failed_reader_falls_back_to_export_with_the_same_digest(fake_rbd, after):
    rng = random.Random(9)
    image = bytes(rng.getrandbits(8) for _i in range(100000))
    diff = [dict(offset=0, length=12, exists='true'), dict(offset=50000, length=30, exists='true')]
    rbd = fake_rbd(image, diff)
    good = V.digest_image(rbd, 'p', None, 'img', 's', 'data', reader=FakeReader(image))
    assert 'fallback' not in good
    died = V.digest_image(rbd, 'p', None, 'img', 's', 'data',
                          reader=DyingReader(image, after, V.WorkerFailed('librbd reader died with SIGABRT')))
    assert died['digest'] == good['digest'] and died['bytes_read'] == good['bytes_read'] == 42
    assert died['fallback'] == 'librbd reader died with SIGABRT; read again with rbd export'
    assert dict(died, fallback=None, seconds=0) == dict(good, fallback=None, seconds=0)


def test_other_reader_errors_are_not_hidden(fake_rbd):
    image = bytes(100)
    rbd = fake_rbd(image, [dict(offset=0, length=10, exists='true')])
    with pytest.raises(ZeroDivisionError):
        V.digest_image(rbd, 'p', None, 'img', 's', 'data', reader=DyingReader(image, 0, ZeroDivisionError()))


def test_extents_digest_is_sha256_of_the_compact_json_list():
    # the definition the old script's hint and the stream both follow (ExtentsHasher builds it incrementally)
    import json as _json
    extents = [(8, 2, True), (0, 4, False), (4096, 1 << 33, True)]
    canon = _json.dumps([[o, l, x] for o, l, x in sorted(extents)], separators=(',', ':'))
    assert V.extents_digest(extents) == hashlib.sha256(canon.encode()).hexdigest()
    assert V.extents_digest([]) == hashlib.sha256(b'[]').hexdigest()


# -- _stream_export: a thread reads ahead of the hash -------------------------------------------------------

class _Exporter:
    """An 'rbd' whose export is a Python child writing ``size`` seeded bytes (then ``rc``, ``stderr``)."""
    timeout = 30

    def __init__(self, size, rc=0, stderr='', seed=7):
        self.script = ('import os, random, sys\n'
                       'r = random.Random(%d); left = %d\n'
                       'while left > 0:\n'
                       '    n = min(left, 300000); sys.stdout.buffer.write(r.randbytes(n)); left -= n\n'
                       'sys.stdout.flush(); sys.stderr.write(%r); sys.exit(%d)\n' % (seed, size, stderr, rc))

    def argv(self, *_args):
        return [sys.executable, '-c', self.script]


def test_stream_export_yields_every_byte_in_order_through_the_read_ahead():
    size = 5 * (1 << 20) + 12345
    r, expected = random.Random(7), b''
    while len(expected) < size:                      # as the child writes them
        expected += r.randbytes(min(size - len(expected), 300000))
    got = b''.join(V._stream_export(_Exporter(size), 'p', None, 'img', 's', prefetch=2))
    assert len(got) == size and got == expected


def test_stream_export_failure_names_the_command_and_its_stderr():
    with pytest.raises(RbdError) as e:
        list(V._stream_export(_Exporter(3 << 20, rc=5, stderr='rbd: error reading'), 'p', None, 'img', 's'))
    assert 'rbd export failed' in str(e.value) and 'error reading' in str(e.value) and 'p/img@s' in str(e.value)


def test_stream_export_closed_early_stops_the_child_and_the_reader():
    before = threading.active_count()
    gen = V._stream_export(_Exporter(64 << 20), 'p', None, 'img', 's', prefetch=1)
    assert len(next(gen)) > 0
    gen.close()                                    # the caller gave up (a mismatch, a timeout)
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
