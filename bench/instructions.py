#!/usr/bin/python3
"""User-space instructions per message (valgrind --tool=callgrind), one
connection: (instructions of an N+1000-message run - those of an N-message run)
/ 1000, so start-up, connect and QUIT cancel out. Deterministic enough for one
run each (the kernel's share is not counted: see bench.py's CPU µs/msg).

  bench/instructions.py [--base 1] [--extra 1000] [--size 10240] [--clients a,b,...]

Clients:
  bulk-1          build/bench_bulk --n N (smtpc_bulk, pipelining across messages)
  smtpc-client-1  build/bench_smtpc --client --n N (client API, one pooled connection)
  smtpc-batch-1   build/bench_smtpc --batch --n N (smtpc_client_send_batch)
  smtpc-1         build/bench_smtpc --n N (session API)
  smtp-source-1   smtp-source -s 1 -d -m N
"""
import argparse
import re
import subprocess
import sys

from benchlib import BUILD, FROM, RCPT, Sink, machine_state, need

ALL = ["bulk-1", "smtpc-client-1", "smtpc-batch-1", "smtpc-1", "smtp-source-1"]


def cmd(name, port, n, size):
    host = "127.0.0.1"
    if name == "bulk-1":
        return [str(BUILD / "bench_bulk"), "--n", str(n), "--size", str(size), host, str(port)]
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
    a = ap.parse_args()
    clients = [c for c in a.clients.split(",") if c]
    need(BUILD / "bench_bulk", "make build")
    state = machine_state()
    rows = []
    for c in clients:
        lo = instructions(cmd(c, "PORT", a.base, a.size))
        hi = instructions(cmd(c, "PORT", a.base + a.extra, a.size))
        per = (hi - lo) / a.extra
        rows.append((c, lo, hi, per))
        print(f"{c:15s} N={a.base}: {lo:,}  N={a.base + a.extra}: {hi:,}  per message {per:,.0f}", file=sys.stderr)
    print(f"\nUser-space instructions per message (callgrind), {a.size}-byte messages, one connection: "
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
