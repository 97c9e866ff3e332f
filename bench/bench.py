#!/usr/bin/python3
"""Throughput benchmark: smtpc against its peers, in the same run.

Every client sends N messages of SIZE bytes (1 recipient) to Postfix's
smtp-sink on loopback (with --tls: through stunnel, implicit TLS, in front of
it). The sink (and stunnel) are pinned to CPU 0, the clients to CPU 1
(bench/README.md: unpinned runs are bimodal). Clients run interleaved,
RUNS times each; the table gives medians of msg/s, client CPU µs per message
(user+sys of the client process, from wait4), peak RSS and (with --tls) the
TLS connections stunnel accepted (handshakes), then ratios.

  bench/bench.py [--n 5000] [--size 10240] [--runs 3] [--clients a,b,...] [--tls] [--json FILE]

Clients:
  smtpc-1        smtpc's bench driver, one connection, pipelining (build/bench_smtpc)
  smtpc-client-1 the same through the client API (smtpc_client_send_mem, one pooled connection)
  smtpc-batch-1  the client API's smtpc_client_send_batch (pipelined across messages, one pooled connection)
  bulk-1, bulk-8 smtpc_bulk (build/bench_bulk), 1 or 8 connections, pipelining
                 across messages (one round trip per message)
  smtp-source-1, -8, -16   Postfix's smtp-source -s 1/8/16 -d (no TLS)
  smtplib-1      Python smtplib re-using one connection (SMTP_SSL with --tls)
  smtplib-8      8 threads, each with its own smtplib connection, N/8 messages each
  nodemailer-1, nodemailer-8   nodemailer's pool (pool: true, maxConnections 1 / 8,
                 raw message, secure: true with --tls); needs bench/setup.sh
  base:NAME      smtpc's client NAME from the build given with --base (before/after)

Other scripts: bench/oneshot.py (one process per message), bench/big.py
(one 100 MiB message), bench/instructions.py (callgrind instructions per message).
"""
import argparse
import pathlib
import sys

from benchlib import (BUILD, NODE_DIR, Certs, Sink, Tunnel, machine_state, median, need, need_node,
                      run_measured, write_json)

SMTPLIB_SCRIPT = r'''
import smtplib, ssl, sys, threading
host, port, n, size, k, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
sys.path.insert(0, sys.argv[7])
from benchlib import message
msg = message(size)
def worker(count):
    if ca:
        s = smtplib.SMTP_SSL(host, port, context=ssl.create_default_context(cafile=ca))
    else:
        s = smtplib.SMTP(host, port)
    s.ehlo("bench.example.org")
    for _ in range(count):
        s.sendmail("a@example.org", ["b@example.org"], msg)
    s.quit()
ts = [threading.Thread(target=worker, args=(n // k + (1 if i < n % k else 0),)) for i in range(k)]
for t in ts: t.start()
for t in ts: t.join()
'''

ALL = ["smtpc-1", "smtpc-client-1", "smtpc-batch-1", "bulk-1", "bulk-8", "smtp-source-1", "smtp-source-8", "smtp-source-16",
       "smtplib-1", "smtplib-8", "nodemailer-1", "nodemailer-8"]
MINE = ("smtpc-1", "smtpc-client-1", "smtpc-batch-1", "bulk-1", "bulk-8")


BASE = None  # --base BUILD_DIR: another build of smtpc, for before/after in one run


def client_cmd(name, port, n, size, ca=None):
    if name.startswith("base:"):
        # the same client from the other build (its own bench drivers)
        cmd = client_cmd(name[5:], port, n, size, ca)
        return [str(BASE / pathlib.Path(cmd[0]).name), *cmd[1:]]
    host = "127.0.0.1"
    tls = ["--tls", "--ca", ca] if ca else []
    if name == "smtpc-1":
        return [str(BUILD / "bench_smtpc"), *tls, "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtpc-client-1":
        return [str(BUILD / "bench_smtpc"), "--client", *tls, "--n", str(n), "--size", str(size), host, str(port)]
    if name == "smtpc-batch-1":
        return [str(BUILD / "bench_smtpc"), "--batch", *tls, "--n", str(n), "--size", str(size), host, str(port)]
    if name.startswith("bulk-"):
        return [str(BUILD / "bench_bulk"), *tls, "--n", str(n), "--size", str(size), "--conns",
                name.split("-")[1], host, str(port)]
    if name.startswith("smtp-source-"):
        if ca:
            raise SystemExit("smtp-source has no TLS")
        return ["/usr/sbin/smtp-source", "-s", name.split("-")[2], "-d", "-m", str(n), "-l", str(size),
                "-f", "a@example.org", "-t", "b@example.org", f"{host}:{port}"]
    if name.startswith("smtplib-"):
        return ["/usr/bin/python3", "-c", SMTPLIB_SCRIPT, host, str(port), str(n), str(size),
                name.split("-")[1], ca or "", str(NODE_DIR.parent)]
    if name.startswith("nodemailer-"):
        need_node()
        return ["node", str(NODE_DIR / "send.js"), host, str(port), str(n), str(size), name.split("-")[1],
                *(["tls", ca] if ca else [])]
    raise SystemExit(f"unknown client {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default="smtpc-1,smtpc-client-1,smtp-source-1,smtplib-1")
    ap.add_argument("--tls", action="store_true", help="implicit TLS through stunnel in front of the sink")
    ap.add_argument("--markdown", action="store_true", help="print only the markdown table")
    ap.add_argument("--json", metavar="FILE", help="also write the table as JSON (bench/plot.py reads it)")
    ap.add_argument("--base", metavar="BUILD_DIR",
                    help="another build (e.g. of the previous commit): clients named base:NAME run from it, "
                         "interleaved with the others, for a before/after comparison in one run")
    a = ap.parse_args()
    global BASE
    BASE = pathlib.Path(a.base).resolve() if a.base else None
    clients = [c for c in a.clients.split(",") if c]
    for c in clients:
        if c.startswith("base:") and (BASE is None or c[5:] not in MINE):
            raise SystemExit(f"{c}: needs --base and one of {', '.join(MINE)}")
        if c not in ALL and not c.startswith("base:"):
            raise SystemExit(f"unknown client {c} (known: {', '.join(ALL)})")
    need(BUILD / "bench_rusage", "make build")
    if any(c.startswith(("smtpc", "bulk")) for c in clients):
        need(BUILD / "bench_smtpc", "make build")
    certs = Certs() if a.tls else None
    state_before = machine_state()
    res = {c: [] for c in clients}
    try:
        for r in range(a.runs):
            for c in clients:  # interleaved: each run visits every client
                sink = Sink()
                tun = Tunnel(certs, sink.port) if certs else None
                try:
                    wall, cpu, rss, _ = run_measured(client_cmd(c, tun.port if tun else sink.port, a.n, a.size,
                                                                certs.ca_file if certs else None))
                    conns = tun.connections() - tun.base if tun else 0
                finally:
                    if tun:
                        tun.stop()
                    sink.stop()
                res[c].append((a.n / wall, cpu * 1e6 / a.n, rss, conns))
                if not a.markdown:
                    print(f"run {r + 1} {c:14s} {a.n / wall:9.0f} msg/s {cpu * 1e6 / a.n:7.1f} µs/msg "
                          f"{rss:6.1f} MB" + (f" {conns} TLS connections" if tun else ""), file=sys.stderr)
    finally:
        if certs:
            certs.remove()
    med = {c: tuple(median(x[i] for x in res[c]) for i in range(4)) for c in clients}
    what = "through stunnel (implicit TLS) to smtp-sink" if a.tls else "to smtp-sink"
    title = (f"{a.n} messages of {a.size} bytes, 1 recipient, {what}; medians of {a.runs} interleaved runs "
             f"(server side on CPU 0, client on CPU 1)")
    state_after = machine_state()
    print(f"\n{title}\n\nbefore: {state_before}\nafter:  {state_after}\n")
    if a.tls:
        print("| client | msg/s | (min–max) | client CPU µs/msg | (min–max) | peak RSS MB | TLS handshakes (connections) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print("| client | msg/s | (min–max) | client CPU µs/msg | (min–max) | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|")
    for c in clients:
        m = med[c]
        r0 = [x[0] for x in res[c]]
        r1 = [x[1] for x in res[c]]
        print(f"| {c} | {m[0]:,.0f} | {min(r0):,.0f}–{max(r0):,.0f} | {m[1]:.1f} | {min(r1):.1f}–{max(r1):.1f} "
              f"| {m[2]:.1f} |" + (f" {m[3]:.0f} |" if a.tls else ""))
    write_json(a.json, title, state_before, state_after, [
        dict(client=c, msg_s=round(med[c][0]), msg_s_min=round(min(x[0] for x in res[c])),
             msg_s_max=round(max(x[0] for x in res[c])), cpu_us=round(med[c][1], 1),
             cpu_us_min=round(min(x[1] for x in res[c]), 1), cpu_us_max=round(max(x[1] for x in res[c]), 1),
             rss_mb=round(med[c][2], 1), **({"tls_handshakes": round(med[c][3])} if a.tls else {}))
        for c in clients])
    print("\nThe issue's targets:")
    def target(text, a, b, i, goal):
        if a in med and b in med:
            print(f"- {text}: {med[a][i] / med[b][i]:.2f} ({goal})")
    target("bulk-8 msg/s / smtp-source-16's (the sink's ceiling)", "bulk-8", "smtp-source-16", 0, "reach it: ~1")
    target("bulk-8 client CPU per message / smtp-source-16's", "bulk-8", "smtp-source-16", 1, "target <= 0.5")
    target("nodemailer-8 client CPU per message / bulk-8's", "nodemailer-8", "bulk-8", 1, "target >= 20")
    target("smtplib-8 client CPU per message / bulk-8's", "smtplib-8", "bulk-8", 1, "no target")
    target("bulk-1 msg/s / smtp-source-1's", "bulk-1", "smtp-source-1", 0, "target >= 2.5")
    target("smtpc-client-1 msg/s / smtp-source-1's", "smtpc-client-1", "smtp-source-1", 0, "target >= 2")
    target("smtpc-batch-1 msg/s / smtp-source-1's", "smtpc-batch-1", "smtp-source-1", 0, "no target")
    print("\nRatios (mine vs peer: msg/s ratio; peer's CPU per message / mine):")
    for mine in MINE:
        if mine not in med:
            continue
        base = med[mine]
        for c in clients:
            if c in MINE:
                continue
            print(f"- {mine} vs {c}: {base[0] / med[c][0]:.2f}x msg/s, "
                  f"{med[c][1] / base[1]:.2f}x less CPU per message (CPU ratio {base[1] / med[c][1]:.3f})")


if __name__ == "__main__":
    main()
