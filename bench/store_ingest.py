"""Sample-ingest speed of the store: ``Store.add_batch`` with realistic samples.

Prints samples per second (not a timed test). Each sample carries 64 ITL values, like a
streamed answer of 65 tokens. ::

    .venv/bin/python bench/store_ingest.py                       # SQLite file in a temp dir
    .venv/bin/python bench/store_ingest.py --samples 500000 --batch 2000 --threads 4
    .venv/bin/python bench/store_ingest.py --url postgresql+psycopg://…
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from pathlib import Path

from clientswarm.metrics.sample import Sample
from clientswarm.store import ClientRecord, ClusterRecord, Store

CLIENTS = 256


def make_batch(worker: int, seq: int, size: int, rng: random.Random) -> list[Sample]:
    """``size`` streamed-chat samples of one worker."""
    batch = []
    base = 1_700_000_000_000_000_000 + seq * 1_000_000_000
    for i in range(size):
        sent = base + i * 1000
        first = sent + 50_000_000
        itl = [rng.uniform(0.005, 0.02) for _ in range(64)]
        ok = rng.random() > 0.01
        batch.append(
            Sample(
                group="chat",
                client=(worker * 997 + i) % CLIENTS,
                worker=worker,
                name="chat",
                scheduled_ns=sent - 1000,
                sent_ns=sent,
                end_ns=first + int(sum(itl) * 1e9),
                status="ok" if ok else "error",
                first_token_ns=first,
                last_token_ns=first + int(sum(itl) * 1e9),
                input_tokens=128,
                output_tokens=65,
                token_source="usage",
                itl_s=itl,
                error_kind=None if ok else "http_500",
                http_status=200 if ok else 500,
            )
        )
    return batch


def rss_bytes() -> int:
    """Resident memory of this process (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="store URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000, help="samples per add_batch")
    parser.add_argument("--threads", type=int, default=1, help="concurrent writers (workers)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'store.db'}"
        store = Store(url)
        store.create_all()
        cluster = f"bench-{int(time.time() * 1000)}"
        store.create_cluster(ClusterRecord(cluster, "bench", "running", "{}", "x", "local"))
        store.create_workers(cluster, args.threads)
        store.create_clients(
            cluster, [ClientRecord(cluster, i, "chat", i % args.threads) for i in range(CLIENTS)]
        )
        per_thread = args.samples // args.threads // args.batch
        # A few distinct batches per writer, sent over and over under new seqs: memory stays
        # small for millions of samples.
        batches = {
            w: [make_batch(w, s, args.batch, random.Random(s)) for s in range(min(per_thread, 8))]
            for w in range(args.threads)
        }

        def ingest(worker: int) -> None:
            mine = batches[worker]
            for seq in range(1, per_thread + 1):
                store.add_batch(cluster, worker, seq, mine[seq % len(mine)])

        threads = [threading.Thread(target=ingest, args=(w,)) for w in range(args.threads)]
        start, cpu_start = time.perf_counter(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        total = per_thread * args.batch * args.threads
        print(
            f"{store.url.get_backend_name()}: {total} samples in {elapsed:.2f} s = "
            f"{total / elapsed:,.0f} samples/s (batch {args.batch}, {args.threads} thread(s)); "
            f"{cpu / total * 1e6:.1f} µs CPU per sample in this process"
        )
        start, rss_start, rss_peak, read = time.perf_counter(), rss_bytes(), 0, 0
        for _ in store.iter_samples(cluster):
            read += 1
            if read % 10_000 == 0:
                rss_peak = max(rss_peak, rss_bytes())
        elapsed = time.perf_counter() - start
        print(
            f"iter_samples: {read} samples in {elapsed:.2f} s = {read / elapsed:,.0f} samples/s; "
            f"resident memory grew {max(0, rss_peak - rss_start) / 2**20:.0f} MiB while reading"
        )
        assert read == total == store.count_samples(cluster)
        store.delete_cluster(cluster)
        store.close()


if __name__ == "__main__":
    main()
