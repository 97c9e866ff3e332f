#!/usr/bin/python3
"""The outbox on PostgreSQL (smtpc-queue(7)): enqueue by SQL, then drain by
1, 2 and 4 `smtpc queue worker` processes of K connections each to
smtp-sink; in the same run, plain bulk sending (bench_bulk, no queue) and the
directory outbox (`smtpc queue flush --connections K`).

    /usr/bin/python3 bench/bench_pg.py [--n 100000] [--size 10240] [--conns 8] [--dir-n 10000]
                                       [--baseline BUILD_DIR] [--pairs R] [--pg-cpu CPU]

--baseline: the build directory of an earlier commit; its smtpc creates the
schema, its workers drain a queue of their own, in the same run, each
worker count next to this build's.

--pg-cpu CPU: the CPU PostgreSQL is pinned to; by default the clients'
(1), `any` for none. The sink stands for the remote server, which never
shares a CPU with the sender's database: pinned with the clients, the
worker and its PostgreSQL together get the CPU the bulk client had (all of
the queue's cost is charged to the sending side), and the sink keeps its
own in both runs. Unpinned, PostgreSQL also runs on the sink's CPU, and
the worker's rate then includes the sink slowed down by the database.

--pairs R: only plain bulk and one worker, one after the other, R times
(the queue filled once and put back between drains); each pair's ratio and
the median ratio, and the medians of the CPU per message.

A private PostgreSQL 15 (the tests' fixture, with PostgreSQL's durable
defaults: fsync and synchronous commit on) on a Unix socket;
smtp-sink pinned to CPU 0, the clients (and PostgreSQL, see --pg-cpu) to CPU 1. Enqueue, through psql (the
body sent once per batch, stored per message): transactions of 1,000
`smtpc.enqueue` calls, and calls of `smtpc.enqueue_many` with 1,000
messages each. Drain: wall time until every message is sent,
client CPU (user+sys of the workers, from wait4) and PostgreSQL's CPU (every
server process, from /proc) per message, peak RSS per worker.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, CLIENT_CPU, FROM, RCPT, ROOT, Sink, machine_state, message, need, run_measured

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from servers.postgres import PSQL, Postgres, missing  # noqa: E402

SMTPC = str(BUILD / "smtpc")
TICK = os.sysconf("SC_CLK_TCK")


def pg_cpu(pg, but=None):
    """CPU seconds of the postmaster and its children (the server processes),
    but the one of process but (the bench's own session)."""
    root = pg.proc.pid
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == str(but):
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("postgres") or int(st[1]) == root:
            total += (int(st[11]) + int(st[12])) / TICK
    return total


def pin(pg, cpu):
    """PostgreSQL's processes to cpu (the server processes it starts later
    inherit it from the postmaster)."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        pm = f.readline().strip()
    kids = subprocess.run(["pgrep", "-P", pm], capture_output=True, text=True).stdout.split()
    for pid in [pm, *kids]:
        subprocess.run(["taskset", "-a", "-p", "-c", cpu, pid], check=True, stdout=subprocess.DEVNULL)


def psql(pg, db, sql, *extra):
    r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.dir, "-p", "5432",
                        "-U", pg.user, "-d", db, *extra, "-c", sql], capture_output=True, timeout=3600)
    if r.returncode:
        raise RuntimeError(r.stderr.decode())
    return r.stdout.decode().strip()


def enqueue(pg, db, n, size, batch=1000, many=False):
    body = message(size)
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    with script:
        script.write("\\set msg '\\\\x%s'\n" % body.hex())
        left = n
        while left > 0:
            k = min(batch, left)
            if many:
                script.write(f"SELECT count(*) FROM smtpc.enqueue_many(ARRAY['{FROM}'], array_fill('{RCPT}'::text,"
                             f" ARRAY[{k}]), array_fill(:'msg'::bytea, ARRAY[{k}]));\n")
            else:
                script.write(f"BEGIN;\nSELECT count(smtpc.enqueue('{FROM}', ARRAY['{RCPT}'], :'msg'::bytea))"
                             f" FROM generate_series(1, {k});\nCOMMIT;\n")
            left -= k
    t0 = time.monotonic()
    r = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.dir, "-p", "5432", "-U", pg.user,
                        "-d", db, "-f", script.name], capture_output=True, timeout=3600)
    dt = time.monotonic() - t0
    os.unlink(script.name)
    if r.returncode:
        raise RuntimeError(r.stderr.decode())
    return dt


def child_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


class Poller:
    """One psql session kept open for the whole drain: asks every 50 ms
    whether a message is left to send. (A psql process and a server process
    per question, counting the sent rows, cost about 15 ms of CPU each, on
    the CPUs the sink and the worker use.) The question reads the two small
    partial indexes of the queued and sending rows. Its server process is
    left out of the PostgreSQL CPU."""

    def __init__(self, pg, db):
        self.p = subprocess.Popen([PSQL, "-X", "-q", "-A", "-t", "-h", pg.dir, "-p", "5432", "-U", pg.user,
                                   "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.p.stdin.write("SELECT pg_backend_pid();\n")
        self.pid = int(self.p.stdout.readline())

    def left(self):
        self.p.stdin.write("SELECT EXISTS (SELECT 1 FROM smtpc.messages WHERE state = 'queued')"
                           " OR EXISTS (SELECT 1 FROM smtpc.messages WHERE state = 'sending');\n")
        line = self.p.stdout.readline().strip()
        if line not in ("t", "f"):
            raise RuntimeError(f"psql said {line!r}")
        return line == "t"

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def drain(pg, db, url, sink, n, workers, conns, smtpc=SMTPC):
    psql(pg, db, "UPDATE smtpc.messages SET state = 'queued', attempts = 0, done_at = NULL, not_before = now(),"
                 " last_code = NULL, rcpt_codes = NULL")
    psql(pg, db, "VACUUM ANALYZE smtpc.messages")
    # as pgbench does before each run: the WAL of the refill written out
    # now, not by a checkpoint during the drain
    psql(pg, db, "CHECKPOINT")
    poll = Poller(pg, db)
    cpu0 = pg_cpu(pg, poll.pid)
    t0 = time.monotonic()
    procs = [subprocess.Popen(["taskset", "-c", CLIENT_CPU, str(BUILD / "bench_rusage"), smtpc, "queue", "worker",
                               "--outbox", url, "--server", f"127.0.0.1:{sink.port}", "--tls", "none",
                               "--connections", str(conns)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(workers)]
    while poll.left():
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited: " + b"".join(p.stderr.read() for p in procs
                                                              if p.poll() is not None).decode())
        time.sleep(0.05)
    wall = time.monotonic() - t0
    pcpu = pg_cpu(pg, poll.pid) - cpu0
    poll.close()
    sent = int(psql(pg, db, "SELECT count(*) FROM smtpc.messages WHERE state = 'sent'"))
    if sent != n:
        raise RuntimeError(f"{sent} of {n} messages sent")
    for p in procs:
        c = child_of(p.pid)
        if c:
            os.kill(c, signal.SIGTERM)
    cpu, rss = 0.0, 0.0
    for p in procs:
        _, err = p.communicate(timeout=120)
        line = [x for x in err.decode().splitlines() if x.startswith("RUSAGE ")][-1].split()
        cpu += float(line[2])
        rss = max(rss, int(line[3]) / 1024.0)
    return wall, cpu, pcpu, rss


def dir_outbox(sink, n, size, conns):
    d = tempfile.mkdtemp(prefix="smtpc-bench-outbox-")
    os.chmod(d, 0o700)
    ob = os.path.join(d, "ob")
    msgf = os.path.join(d, "m.eml")
    with open(msgf, "wb") as f:
        f.write(message(size))
    t0 = time.monotonic()
    pending = []
    for _ in range(n):
        pending.append(subprocess.Popen([SMTPC, "send", "--outbox", ob, "--from", FROM, "--to", RCPT,
                                         "--message", msgf], stdout=subprocess.DEVNULL))
        if len(pending) >= 8:
            pending.pop(0).wait()
    for p in pending:
        p.wait()
    add = time.monotonic() - t0
    wall, cpu, rss, _ = run_measured([SMTPC, "queue", "flush", "--outbox", ob, "--server", f"127.0.0.1:{sink.port}",
                                      "--tls", "none", "--connections", str(conns)])
    subprocess.run(["rm", "-rf", d])
    return add, wall, cpu, rss


def bulk_row(sink, a):
    wall, cpu, rss, _ = run_measured([str(BUILD / "bench_bulk"), "--n", str(a.n), "--size", str(a.size),
                                      "--conns", str(a.conns), "127.0.0.1", str(sink.port)])
    return a.n / wall, cpu * 1e6 / a.n, rss


def pairs(pg, sink, db, url, a):
    print("| pair | bulk msg/s | bulk CPU µs/msg | 1 worker msg/s | worker CPU µs/msg | PostgreSQL CPU µs/msg"
          " | worker / bulk |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    rs = []
    for i in range(a.pairs):
        brate, bcpu, _ = bulk_row(sink, a)
        wall, cpu, pcpu, _ = drain(pg, db, url, sink, a.n, 1, a.conns)
        wrate = a.n / wall
        rs.append((brate, bcpu, wrate, cpu * 1e6 / a.n, pcpu * 1e6 / a.n, wrate / brate))
        print(f"| {i + 1} | {brate:,.0f} | {bcpu:.1f} | {wrate:,.0f} | {cpu * 1e6 / a.n:.1f} | {pcpu * 1e6 / a.n:.1f}"
              f" | {wrate / brate:.2f} |", flush=True)
    m = [statistics.median(x[k] for x in rs) for k in range(6)]
    print(f"| median | {m[0]:,.0f} | {m[1]:.1f} | {m[2]:,.0f} | {m[3]:.1f} | {m[4]:.1f} | **{m[5]:.2f}** |")
    print(f"# at the end: {machine_state()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--dir-n", type=int, default=10000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--baseline", help="the build directory of an earlier commit, measured in the same run")
    ap.add_argument("--pg-cpu", default=CLIENT_CPU,
                    help=f"pin PostgreSQL to this CPU (default: the clients' CPU, {CLIENT_CPU}); any: not pinned")
    ap.add_argument("--pairs", type=int, default=0, help="only bulk and 1 worker, interleaved, this many times")
    a = ap.parse_args()
    base = os.path.join(a.baseline, "smtpc") if a.baseline else None
    if base:
        need(base, "a build of the earlier commit")
    need(SMTPC, "make build")
    need(BUILD / "bench_rusage", "make build")
    need("/usr/sbin/smtp-sink", "bench/setup.sh (postfix)")
    why = missing()
    if why:
        raise SystemExit(why)
    pinned = a.pg_cpu != "any"
    print(f"# {machine_state()}; PostgreSQL " + (f"pinned to CPU {a.pg_cpu}" if pinned else "not pinned"))
    pg = Postgres(fast=False)
    if pinned:
        pin(pg, a.pg_cpu)
    sink = Sink()
    rows = []
    try:
        print("# PostgreSQL: " + ", ".join(f"{k} {psql(pg, 'postgres', 'SHOW ' + k)}" for k in
                                            ("fsync", "synchronous_commit", "full_page_writes", "wal_level",
                                             "shared_buffers", "default_toast_compression")))
        dbs = {}
        for name, binary in (("base", base), ("new", SMTPC)):
            if not binary:
                continue
            db = pg.new_db()
            url = pg.url(db)
            subprocess.run([binary, "queue", "init", "--outbox", url], check=True)
            dbs[name] = (db, url, binary)
            tag = " (baseline schema)" if name == "base" else ""
            dt = enqueue(pg, db, a.n, a.size)
            print(f"enqueue {a.n} x {a.size} B by SQL, 1,000 smtpc.enqueue per transaction{tag}: {dt:.1f} s,"
                  f" {a.n / dt:,.0f} msg/s")
        if a.pairs:
            return pairs(pg, sink, dbs["new"][0], dbs["new"][1], a)
        if "new" in dbs:  # the same, by enqueue_many, in a database of its own
            db = pg.new_db()
            subprocess.run([SMTPC, "queue", "init", "--outbox", pg.url(db)], check=True)
            dt = enqueue(pg, db, a.n, a.size, many=True)
            print(f"enqueue {a.n} x {a.size} B by SQL, smtpc.enqueue_many of 1,000: {dt:.1f} s, {a.n / dt:,.0f} msg/s")
            psql(pg, "postgres", f"DROP DATABASE {db}")
        wall, cpu, rss, _ = run_measured([str(BUILD / "bench_bulk"), "--n", str(a.n), "--size", str(a.size),
                                          "--conns", str(a.conns), "127.0.0.1", str(sink.port)])
        rows.append((f"bulk, no queue ({a.conns} conns)", a.n, a.n / wall, cpu * 1e6 / a.n, None, rss))
        for w in [int(x) for x in a.workers.split(",")]:
            for name, (db, url, binary) in dbs.items():
                wall, cpu, pcpu, rss = drain(pg, db, url, sink, a.n, w, a.conns, binary)
                rows.append((f"PostgreSQL outbox{', baseline' if name == 'base' else ''}, {w} worker"
                             f"{'s' if w > 1 else ''} x {a.conns} conns", a.n, a.n / wall,
                             cpu * 1e6 / a.n, pcpu * 1e6 / a.n, rss))
        # bulk again: the machine's state may have changed during the drains
        wall, cpu, rss, _ = run_measured([str(BUILD / "bench_bulk"), "--n", str(a.n), "--size", str(a.size),
                                          "--conns", str(a.conns), "127.0.0.1", str(sink.port)])
        rows.append((f"bulk, no queue ({a.conns} conns), again after the drains", a.n, a.n / wall, cpu * 1e6 / a.n,
                     None, rss))
        if a.dir_n:
            add, wall, cpu, rss = dir_outbox(sink, a.dir_n, a.size, a.conns)
            rows.append((f"directory outbox, queue flush --connections {a.conns}", a.dir_n, a.dir_n / wall,
                         cpu * 1e6 / a.dir_n, None, rss))
            print(f"(directory outbox filled by {a.dir_n} `smtpc send --outbox` processes: {add:.1f} s)")
    finally:
        sink.stop()
        pg.close()
    print(f"# at the end: {machine_state()}")
    print()
    print("| client | messages | msg/s | client CPU µs/msg | PostgreSQL CPU µs/msg | peak RSS MB (per process) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, rate, c, p, rss in rows:
        print(f"| {name} | {n:,} | {rate:,.0f} | {c:.0f} | {'' if p is None else f'{p:.0f}'} | {rss:.1f} |")


if __name__ == "__main__":
    main()
