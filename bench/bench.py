#!/usr/bin/python3
"""Throughput benchmark: smtpc against its peers, in the same run.

Every client sends N messages of SIZE bytes (1 recipient) to Postfix's
smtp-sink on loopback. The sink is pinned to CPU 0 and the clients to CPU 1
(shared/PERF-NOTES.md: unpinned runs are bimodal). Clients run interleaved,
RUNS times each; the table gives medians of msg/s, client CPU µs per message
(user+sys of the client process, from wait4) and peak RSS, and the ratio of
smtpc's msg/s to each peer's.

  bench/bench.py [--n 5000] [--size 10240] [--runs 3] [--clients a,b,...]

Clients:
  smtpc-1        smtpc's bench driver, one connection, pipelining (build/bench_smtpc)
  smtpc-client-1 the same through the client API (smtpc_client_send_mem, one pooled connection)
  smtpc-batch-1  the client API's smtpc_client_send_batch (pipelined across messages, one pooled connection)
  smtp-source-1  Postfix's smtp-source -s 1 -d (one connection, no pipelining)
  smtplib-1      Python smtplib re-using one connection
  bulk-1, bulk-8 smtpc_bulk (build/bench_bulk), 1 or 8 connections, pipelining
                 across messages (one round trip per message)
  smtp-source-8, smtp-source-16   smtp-source -s 8 / -s 16 -d
"""
import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = Path(os.environ.get("SMTPC_BUILD_DIR", ROOT / "build"))

SMTPLIB_SCRIPT = r'''
import smtplib, sys
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hdr = "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n"
line = "x" * 76 + "\r\n"
body = (line * (size // len(line) + 1))[: max(0, size - len(hdr))]
msg = (hdr + body).encode()
s = smtplib.SMTP(host, port)
s.ehlo("bench.example.org")
for _ in range(n):
    s.sendmail("a@example.org", ["b@example.org"], msg)
s.quit()
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Sink:
    def __init__(self, cpu="0", backlog=1000):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, "/usr/sbin/smtp-sink", "-u", "nobody",
             f"127.0.0.1:{self.port}", str(backlog)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def client_cmd(name, port, n, size):
    host = "127.0.0.1"
    if name == "smtpc-1":
        return [str(BUILD / "bench_smtpc"), "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtpc-client-1":
        return [str(BUILD / "bench_smtpc"), "--client", "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtpc-batch-1":
        return [str(BUILD / "bench_smtpc"), "--batch", "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtp-source-1":
        return ["/usr/sbin/smtp-source", "-s", "1", "-d", "-m", str(n), "-l", str(size),
                "-f", "a@example.org", "-t", "b@example.org", f"{host}:{port}"]
    if name.startswith("bulk-"):
        return [str(BUILD / "bench_bulk"), "--n", str(n), "--size", str(size), "--conns",
                name.split("-")[1], host, str(port)]
    if name.startswith("smtp-source-"):
        return ["/usr/sbin/smtp-source", "-s", name.split("-")[2], "-d", "-m", str(n), "-l", str(size),
                "-f", "a@example.org", "-t", "b@example.org", f"{host}:{port}"]
    if name == "smtplib-1":
        return ["/usr/bin/python3", "-c", SMTPLIB_SCRIPT, host, str(port), str(n), str(size)]
    raise SystemExit(f"unknown client {name}")


def run_one(cmd, cpu="1"):
    """Runs cmd pinned to cpu through bench_rusage; returns (wall s, cpu s, peak RSS MB)."""
    p = subprocess.run(["taskset", "-c", cpu, str(BUILD / "bench_rusage"), *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {err[-500:]}")
    line = [l for l in err.splitlines() if l.startswith("RUSAGE ")][-1].split()
    return float(line[1]), float(line[2]), int(line[3]) / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default="smtpc-1,smtpc-client-1,smtp-source-1,smtplib-1")
    ap.add_argument("--markdown", action="store_true", help="print only the markdown table")
    a = ap.parse_args()
    clients = [c for c in a.clients.split(",") if c]
    if any(c.startswith("smtpc") for c in clients) and not (BUILD / "bench_smtpc").exists():
        raise SystemExit(f"{BUILD / 'bench_smtpc'} not built (make build)")
    res = {c: [] for c in clients}
    for r in range(a.runs):
        for c in clients:  # interleaved: each run visits every client
            sink = Sink()
            try:
                wall, cpu, rss = run_one(client_cmd(c, sink.port, a.n, a.size))
            finally:
                sink.stop()
            res[c].append((a.n / wall, cpu * 1e6 / a.n, rss))
            if not a.markdown:
                print(f"run {r + 1} {c:14s} {a.n / wall:9.0f} msg/s {cpu * 1e6 / a.n:7.1f} µs/msg {rss:6.1f} MB",
                      file=sys.stderr)
    med = {c: tuple(statistics.median(x[i] for x in res[c]) for i in range(3)) for c in clients}
    print(f"\n{a.n} messages of {a.size} bytes, 1 recipient, to smtp-sink; medians of {a.runs} runs "
          f"(sink on CPU 0, client on CPU 1)\n")
    print("| client | msg/s | client CPU µs/msg | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for c in clients:
        m = med[c]
        print(f"| {c} | {m[0]:,.0f} | {m[1]:.1f} | {m[2]:.1f} |")
    for mine in ("smtpc-1", "bulk-1", "bulk-8"):
        if mine not in med:
            continue
        base = med[mine]
        print()
        for c in clients:
            if c in ("smtpc-1", "bulk-1", "bulk-8"):
                continue
            print(f"- {mine} vs {c}: {base[0] / med[c][0]:.2f}x msg/s, "
                  f"{med[c][1] / base[1]:.2f}x less CPU per message")
    if "smtpc-client-1" in med:
        cb = med["smtpc-client-1"]
        print()
        for c in clients:
            if c.startswith("smtpc"):
                continue
            print(f"- smtpc-client-1 vs {c}: {cb[0] / med[c][0]:.2f}x msg/s, "
                  f"{med[c][1] / cb[1]:.2f}x less CPU per message")


if __name__ == "__main__":
    main()
