"""Benchmark of the ceph_rbd.backup collection against the old per-image script (a benchmark, not a test).

Runs against the two-cluster test bed (``bash tests/testbed/testbed.sh up``; ``make bench`` does that
first).  Every case measures the role and its baseline *side by side in the same run*, alternating
which one goes first, and reports medians of N runs and the ratio between them: absolute seconds on a
shared 2-core machine mean little, ratios measured together mean more.  See bench/README.md.

Cases (``--cases``, run in this order):

  p1    throughput: SIZE of fresh changes on one image (unique random bytes, 1/16 zero runs), one
        incremental run of the role (``rbd_replicate_verify: extents``; ``rbd_replicate_retention_dest:
        {last: 1}`` so that the test bed's small backup OSD holds 2 versions of the image, not 4: the
        prune step still removes one snapshot per run, as in a steady state) vs the old script's steps (snap
        create; export-diff | ssh import-diff with OpenSSH's default cipher; rbd diff | md5sum on both
        sides) on the same source image (its own snapshots) into an image of another backup pool.
  p3    role runs on SIZE of fresh changes with verify none, data (against the digest the transfer takes
        of its stream: the role's default) and data with a second read of the source, in rotating
        order: what a verify variant adds = its median minus verify none's, / the transfer seconds.
  p4    peak RSS (VmHWM) of the module processes, polled from /proc at 20 Hz: in the p3 role runs
        (SIZE) and in role runs on a small change (verify data): flat, and under 100 MiB?
  p1z   as p1 with ``rbd_replicate_compression: zstd`` on partly compressible data (per MiB: 512 KiB
        random, 448 KiB log text, 64 KiB zeros) vs the old script on the same data, both over an ssh
        link shaped to --link (default 1gbit: an off-site link; tc htb on lo for the ssh port only;
        ``--link none``: plain loopback, where bandwidth is free and zstd only costs CPU).
  ovh   the fixed cost of a role run (1 unchanged 1 MiB image), ssh pipelining off vs on.
  ab    ``rbd import-diff -`` (stdin: one write in flight) vs ``rbd import-diff /dev/stdin`` (another
        fd: rbd_concurrent_management_ops writes in flight), same diff, direct local pipe, no ssh.
  p2    scale: COUNT images of 1 MiB with a few KiB written, replicated once, nothing changed: a full
        nightly role run vs a serial per-image CLI loop (snap create; ssh snap ls for the base;
        export-diff | ssh import-diff; rbd diff | md5sum both sides; snap rm both sides), the loop
        timed on a SAMPLE of images and scaled to COUNT.
  prof  after p2: the transfer code in-process on a few unchanged images, every client call timed,
        stream as is vs over the multiplexed ssh connection; and the same queries through python3-rbd.
  push  COUNT images of 1 MiB with a few KiB written in each of two pools, replicated once by the bench
        (python3-rbd, not timed), nothing changed: a full nightly role run with
        ``rbd_replicate_transport: pull`` (the default) on one and with ``push`` on the other,
        alternating which goes first: push/pull of the medians, and both per-task profiles (bench/fleet.py).
  k1    --k1-images (1000; --quick 200) such images, replicated once by the bench, nothing changed: a full
        nightly role run (role defaults: verify data, prune both sides), its median against 45 s, its
        seconds per image (to compare with p2's 200 images) and its per-task profile (bench/fleet.py).
  first COUNT new images of 1 MiB (960 KiB of unique random data each) in a new pool: the role's first
        nightly run (every image a first sync) vs the serial loop of the old script's first copies (snap
        create; ssh rbd create; export-diff | ssh import-diff; rbd diff | md5sum both sides) timed on
        SAMPLE images and scaled; fresh pools every run (bench/edges.py).

Writes bench/results/latest.json (and a time-stamped copy) and prints a markdown table.  Only pools
named ``bench-<case>-<run id>`` are created and they are removed at the end.  Before each heavy step
it checks that neither a test-bed OSD nor the host disk can fill up (--max-osd-use, --min-free), and
it kills an ansible run (and its own module processes) that hangs (--run-timeout).

Run it as ``python bench/bench.py [options]`` or ``python -m bench [options]`` from the repository root
(``make bench``).  The modules: cli (options, steps, main), cases (one function per case), baselines (the
old script's steps, the serial loop, raw rbd pipes), profile (prof), runner (Bench: pools, role runs, bash,
the disk and hang guards), watch (the /proc watcher), analysis (what a role run recorded), data (what is
written), link (the shaped ssh link), cluster (the test bed's clusters), report (table, profiles, JSON),
common (constants, log, median).
"""
