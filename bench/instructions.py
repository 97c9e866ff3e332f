#!/usr/bin/python3
"""User-space instructions per message (valgrind --tool=callgrind), one
connection: (instructions of an N+1000-message run - those of an N-message run)
/ 1000, so start-up, connect and QUIT cancel out. Deterministic enough for one
run each (the kernel's share is not counted: see bench.py's CPU µs/msg).

  bench/instructions.py [--base 1] [--extra 1000] [--size 10240] [--clients a,b,...] [--before BUILD_DIR]

Clients:
  bulk-1          build/bench_bulk --n N (smtpc_bulk, pipelining across messages)
  bulk-8          the same over 8 connections
  smtpc-client-1  build/bench_smtpc --client --n N (client API, one pooled connection)
  smtpc-batch-1   build/bench_smtpc --batch --n N (smtpc_client_send_batch)
  smtpc-1         build/bench_smtpc --n N (session API)
  smtp-source-1   smtp-source -s 1 -d -m N
  base:NAME       smtpc's client NAME from the build given with --before (before/after)
"""
import argparse
import pathlib
import re
import subprocess
import sys

from benchlib import BUILD, FROM, RCPT, Sink, machine_state, need

BEFORE = None  # --before BUILD_DIR: clients base:NAME run from there

ALL = ["bulk-1", "bulk-8", "smtpc-client-1", "smtpc-batch-1", "smtpc-1", "smtp-source-1"]


def cmd(name, port, n, size):
    if name.startswith("base:"):
        c = cmd(name[5:], port, n, size)
        return [str(BEFORE / pathlib.Path(c[0]).name), *c[1:]]
    host = "127.0.0.1"
    if name in ("bulk-1", "bulk-8"):
        return [str(BUILD / "bench_bulk"), "--n", str(n), "--size", str(size), "--conns", name[5:], host,
                str(port)]
    if name == "smtpc-client-1":
        return [str(BUILD / "bench_smtpc"), "--client", "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtpc-batch-1":
        return [str(BUILD / "bench_smtpc"), "--batch", "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtpc-1":
        return [str(BUILD / "bench_smtpc"), "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtp-source-1":
        return ["/usr/sbin/smtp-source", "-s", "1", "-d", "-m", str(n), "-l", str(size), "-f", FROM, "-t", RCPT,
                f"{host}:{port}"]
    raise SystemExit(f"unknown client {name}")


def instructions(argv):
    sink = Sink()
    try:
        argv = [a.replace("PORT", str(sink.port)) for a in argv]
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    finally:
        sink.stop()
    err = p.stderr.decode(errors="replace")
    m = re.search(r"Collected : (\d+)", err)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"{argv[0]} under callgrind failed ({p.returncode}): {err[-800:]}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=int, default=1)
    ap.add_argument("--extra", type=int, default=1000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--clients", default="bulk-1,smtpc-client-1,smtp-source-1")
    ap.add_argument("--before", metavar="BUILD_DIR", help="another build: clients base:NAME run from it")
    a = ap.parse_args()
    global BEFORE
    BEFORE = pathlib.Path(a.before).resolve() if a.before else None
    clients = [c for c in a.clients.split(",") if c]
    for c in clients:
        if c.startswith("base:") and BEFORE is None:
            raise SystemExit(f"{c}: needs --before BUILD_DIR")
        if c.removeprefix("base:") not in ALL:
            raise SystemExit(f"unknown client {c} (known: {', '.join(ALL)})")
    need(BUILD / "bench_bulk", "make build")
    state = machine_state()
    rows = []
    for c in clients:
        lo = instructions(cmd(c, "PORT", a.base, a.size))
        hi = instructions(cmd(c, "PORT", a.base + a.extra, a.size))
        per = (hi - lo) / a.extra
        rows.append((c, lo, hi, per))
        print(f"{c:16s} N={a.base}: {lo:,}  N={a.base + a.extra}: {hi:,}  per message {per:,.0f}", file=sys.stderr)
    print(f"\nUser-space instructions per message (callgrind), {a.size}-byte messages, one connection (bulk-8: eight): "
          f"(run of {a.base + a.extra} - run of {a.base}) / {a.extra}\n\n{state}\n")
    print(f"| client | instructions, N={a.base} | instructions, N={a.base + a.extra} | per message |")
    print("|---|---:|---:|---:|")
    for c, lo, hi, per in rows:
        print(f"| {c} | {lo:,} | {hi:,} | {per:,.0f} |")
    base = dict((r[0], r[3]) for r in rows)
    if "smtp-source-1" in base:
        print()
        for c, _, _, per in rows:
            if c != "smtp-source-1":
                print(f"- {c}: {per / base['smtp-source-1']:.2f}x smtp-source -s1 -d's instructions per message")


if __name__ == "__main__":
    main()
