#!/usr/bin/python3
"""One big message (default 100 MiB) over one connection to smtp-sink: MB/s,
client CPU and peak RSS of each client, interleaved RUNS times, medians.
Sink on CPU 0, client on CPU 1 (bench_rusage measures the client process).

  bench/big.py [--mib 100] [--runs 3] [--clients a,b,...] [--json FILE]

Clients:
  bulk           build/bench_bulk --n 1 --file FILE (smtpc_bulk, body streamed from a read callback)
  smtpc-send     smtpc send --message FILE (the CLI; it streams the file)
  smtpc-sendmail smtpc sendmail -t -i < FILE (the body spooled to $TMPDIR past 1 MiB, then streamed)
  curl           curl -s smtp://... -T FILE
  smtp-source    smtp-source -m 1 -l BYTES (generates its own message of that size)
  smtplib        Python smtplib: reads the file, sendmail()
"""
import argparse
import os
import sys
import tempfile

from benchlib import BUILD, FROM, RCPT, Sink, machine_state, median, need, run_measured, write_json

ALL = ["bulk", "smtpc-send", "smtpc-sendmail", "curl", "smtp-source", "smtplib"]
MINE = ("bulk", "smtpc-send", "smtpc-sendmail")
SMTPLIB = r'''
import smtplib, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "rb") as f:
    msg = f.read()
s = smtplib.SMTP(host, port)
s.sendmail("a@example.org", ["b@example.org"], msg)
s.quit()
'''


def make_file(path, size):
    hdr = f"From: {FROM}\r\nTo: {RCPT}\r\nSubject: big\r\n\r\n".encode()
    line = b"y" * 76 + b"\r\n"
    chunk = line * 13443  # ~1 MiB of lines
    with open(path, "wb") as f:
        f.write(hdr)
        left = size - len(hdr)
        while left > 0:
            part = chunk[:left] if left < len(chunk) else chunk
            f.write(part)
            left -= len(part)
    with open(path, "r+b") as f:  # end with CRLF
        f.seek(size - 2)
        f.write(b"\r\n")


def cmd(name, port, path, size):
    """(argv, extra environment, stdin file or None)"""
    host = "127.0.0.1"
    if name == "smtpc-sendmail":
        return [str(BUILD / "smtpc"), "sendmail", "-t", "-i"], {"SMTPC_SERVER": f"{host}:{port}",
                                                                "SMTPC_TLS": "none"}, path
    return argv(name, host, port, path, size), {}, None


def argv(name, host, port, path, size):
    if name == "bulk":
        return [str(BUILD / "bench_bulk"), "--n", "1", "--file", path, host, str(port)]
    if name == "smtpc-send":
        return [str(BUILD / "smtpc"), "send", "--server", f"{host}:{port}", "--tls", "none", "--from", FROM,
                "--to", RCPT, "--message", path]
    if name == "curl":
        return ["curl", "-s", f"smtp://{host}:{port}", "--mail-from", FROM, "--mail-rcpt", RCPT, "-T", path]
    if name == "smtp-source":
        return ["/usr/sbin/smtp-source", "-s", "1", "-m", "1", "-l", str(size), "-f", FROM, "-t", RCPT,
                f"{host}:{port}"]
    if name == "smtplib":
        return ["/usr/bin/python3", "-c", SMTPLIB, host, str(port), path]
    raise SystemExit(f"unknown client {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default=",".join(ALL))
    ap.add_argument("--json", metavar="FILE", help="also write the table as JSON (bench/plot.py reads it)")
    a = ap.parse_args()
    clients = [c for c in a.clients.split(",") if c]
    need(BUILD / "bench_bulk", "make build")
    size = a.mib << 20
    tmp = tempfile.mkdtemp(prefix="smtpc-bench-big-")
    path = os.path.join(tmp, "big.eml")
    make_file(path, size)
    env = dict(os.environ, SMTPC_CONFIG="/dev/null", HOME=tmp)
    state_before = machine_state()
    res = {c: [] for c in clients}
    try:
        for r in range(a.runs):
            for c in clients:
                sink = Sink()
                argv_, extra, stdin = cmd(c, sink.port, path, size)
                try:
                    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as f:
                        wall, cpu, rss, _ = run_measured(argv_, env=dict(env, **extra), stdin=f)
                finally:
                    sink.stop()
                res[c].append((size / wall / 1e6, cpu, rss, wall))
                print(f"run {r + 1} {c:12s} {size / wall / 1e6:7.1f} MB/s {wall:6.2f} s CPU {cpu:5.2f} s "
                      f"{rss:7.1f} MB", file=sys.stderr)
    finally:
        os.unlink(path)
        os.rmdir(tmp)
    med = {c: tuple(median(x[i] for x in res[c]) for i in range(4)) for c in clients}
    title = (f"One message of {a.mib} MiB ({size} bytes) over one connection to smtp-sink; medians of {a.runs} "
             f"interleaved runs (sink on CPU 0, client on CPU 1)")
    state_after = machine_state()
    print(f"\n{title}\n\nbefore: {state_before}\nafter:  {state_after}\n")
    print("| client | MB/s | wall s | client CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for c in clients:
        m = med[c]
        print(f"| {c} | {m[0]:.0f} | {m[3]:.2f} | {m[1]:.2f} | {m[2]:.1f} |")
    write_json(a.json, title, state_before, state_after, [
        dict(client=c, mb_s=round(med[c][0]), wall_s=round(med[c][3], 2), cpu_s=round(med[c][1], 2),
             rss_mb=round(med[c][2], 1)) for c in clients])
    print("\nThe issue's targets: >= curl's MB/s, < 16 MiB peak RSS.")
    print("\nRatios (MB/s):")
    for mine in MINE:
        if mine in med:
            for c in clients:
                if c not in MINE:
                    print(f"- {mine} vs {c}: {med[mine][0] / med[c][0]:.2f}x")


if __name__ == "__main__":
    main()
