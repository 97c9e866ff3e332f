#!/usr/bin/python3
"""One process per message, as cron jobs and PHP's mail() use a sendmail:
M sequential processes of each client, each sending one message of SIZE bytes
to smtp-sink (with --tls: through stunnel, implicit TLS, in front of it).

The sink (and stunnel) run on CPU 0; build/bench_loop (bench/loop.c), pinned
to CPU 1, forks the M processes one after the other there. Clients are interleaved RUNS times; the
table gives medians of wall ms per message (the whole loop / M: fork, exec,
start-up, connect, SMTP dialogue, exit), client CPU ms per message (user+sys
from wait4) and peak RSS, then ratios. /bin/true is the fork+exec floor.

  bench/oneshot.py [--m 200] [--size 10240] [--runs 3] [--clients a,b,...] [--tls] [--json FILE]

Clients:
  true            /bin/true (the floor: no message)
  smtpc-send      smtpc send --server ... --tls none --from ... --to ... --message FILE
  smtpc-sendmail  smtpc sendmail -t -i < FILE (SMTPC_SERVER, SMTPC_TLS from the environment)
  smtpc-linked    smtpc send as above, with libsmtpc.so linked against OpenSSL and libidn2
                  (-DSMTPC_LAZY_LIBS=OFF, built into build-linked/ on first use): what the
                  lazy loading of src/lazy/lazy.c saves, measured in the same run
  curl            curl -s smtp://HOST:PORT --mail-from ... --mail-rcpt ... -T FILE
  msmtp           msmtp -C CONF -t < FILE (a temporary configuration file, auth and TLS off)
  smtp-source     smtp-source -s 1 -m 1 -l SIZE (no TLS)
Every client reads SMTPC_CONFIG=/dev/null (smtpc: no configuration file).
"""
import argparse
import os
import subprocess
import sys
import tempfile

from benchlib import (BUILD, CLIENT_CPU, FROM, RCPT, Certs, Sink, Tunnel, machine_state, median, message,
                      need, write_json)

ALL = ["true", "smtpc-send", "smtpc-sendmail", "curl", "msmtp", "smtp-source"]
LINKED = BUILD.parent / "build-linked"


def build_linked():
    """The CLI with libsmtpc.so linked normally: OpenSSL and libidn2 loaded at start-up."""
    root = BUILD.parent
    subprocess.run(["cmake", "-S", str(root), "-B", str(LINKED), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DSMTPC_LAZY_LIBS=OFF", "-DSMTPC_BUILD_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(LINKED), "--target", "smtpc_cli"], check=True, stdout=subprocess.DEVNULL)


def client(name, port, size, msgfile, tmp, ca):
    """(argv, extra environment, stdin file or None)"""
    smtpc = str(BUILD / "smtpc")
    tls = "implicit" if ca else "none"
    if name == "true":
        return ["/bin/true"], {}, None
    if name == "smtpc-send":
        return [smtpc, "send", "--server", f"127.0.0.1:{port}", "--tls", tls, *(["--ca-file", ca] if ca else []),
                "--from", FROM, "--to", RCPT, "--message", msgfile], {}, None
    if name == "smtpc-linked":
        return [str(LINKED / "smtpc"), *client("smtpc-send", port, size, msgfile, tmp, ca)[0][1:]], {}, None
    if name == "smtpc-sendmail":
        env = {"SMTPC_SERVER": f"127.0.0.1:{port}", "SMTPC_TLS": tls}
        if ca:
            env["SMTPC_CA_FILE"] = ca
        return [smtpc, "sendmail", "-t", "-i"], env, msgfile
    if name == "curl":
        if ca:
            return ["curl", "-s", "--ssl-reqd", "--cacert", ca, f"smtps://127.0.0.1:{port}", "--mail-from", FROM,
                    "--mail-rcpt", RCPT, "-T", msgfile], {}, None
        return ["curl", "-s", f"smtp://127.0.0.1:{port}", "--mail-from", FROM, "--mail-rcpt", RCPT,
                "-T", msgfile], {}, None
    if name == "msmtp":
        conf = os.path.join(tmp, f"msmtprc-{port}")
        with open(conf, "w") as f:
            f.write("defaults\nauth off\n")
            f.write(f"tls on\ntls_starttls off\ntls_trust_file {ca}\n" if ca else "tls off\n")
            f.write(f"account default\nhost 127.0.0.1\nport {port}\nfrom {FROM}\n")
        os.chmod(conf, 0o600)
        return ["msmtp", "-C", conf, "-t"], {}, msgfile
    if name == "smtp-source":
        if ca:
            return None
        return ["/usr/sbin/smtp-source", "-s", "1", "-m", "1", "-l", str(size), "-f", FROM, "-t", RCPT,
                f"127.0.0.1:{port}"], {}, None
    raise SystemExit(f"unknown client {name}")


def loop(argv, env, stdin, m):
    """Runs argv m times in sequence through bench_loop (pinned to CLIENT_CPU);
    returns (wall s, summed cpu s, max RSS MB)."""
    p = subprocess.run(["taskset", "-c", CLIENT_CPU, str(BUILD / "bench_loop"), str(m),
                        *(["--stdin", stdin] if stdin else []), *argv],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {err[-800:]}")
    line = [l for l in err.splitlines() if l.startswith("LOOP ")][-1].split()
    return float(line[1]), float(line[2]), int(line[3]) / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=200, help="processes (messages) per client per run")
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default=",".join(ALL))
    ap.add_argument("--tls", action="store_true", help="implicit TLS through stunnel in front of the sink")
    ap.add_argument("--json", metavar="FILE", help="also write the table as JSON (bench/plot.py reads it)")
    a = ap.parse_args()
    clients = [c for c in a.clients.split(",") if c]
    if a.tls:
        clients = [c for c in clients if c != "smtp-source"]
    need(BUILD / "smtpc", "make build")
    need(BUILD / "bench_loop", "make build")
    if "smtpc-linked" in clients:
        build_linked()
    certs = Certs() if a.tls else None
    tmp = tempfile.mkdtemp(prefix="smtpc-bench-oneshot-")
    msgfile = os.path.join(tmp, "msg.eml")
    with open(msgfile, "wb") as f:
        f.write(message(a.size))
    base_env = dict(os.environ, SMTPC_CONFIG="/dev/null", HOME=tmp)
    state_before = machine_state()
    res = {c: [] for c in clients}
    try:
        for r in range(a.runs):
            for c in clients:
                sink = Sink()
                tun = Tunnel(certs, sink.port) if certs else None
                try:
                    argv, env, stdin = client(c, tun.port if tun else sink.port, a.size, msgfile, tmp,
                                              certs.ca_file if certs else None)
                    wall, cpu, rss = loop(argv, dict(base_env, **env), stdin, a.m)
                    conns = tun.connections() - tun.base if tun else None
                finally:
                    if tun:
                        tun.stop()
                    sink.stop()
                res[c].append((wall * 1e3 / a.m, cpu * 1e3 / a.m, rss))
                print(f"run {r + 1} {c:15s} {wall * 1e3 / a.m:7.2f} ms/msg {cpu * 1e3 / a.m:6.2f} CPU ms/msg "
                      f"{rss:6.1f} MB" + (f" {conns} TLS connections" if tun else ""), file=sys.stderr)
    finally:
        if certs:
            certs.remove()
        for fn in os.listdir(tmp):
            os.unlink(os.path.join(tmp, fn))
        os.rmdir(tmp)
    med = {c: tuple(median(x[i] for x in res[c]) for i in range(3)) for c in clients}
    what = "through stunnel (implicit TLS) to smtp-sink" if a.tls else "to smtp-sink"
    title = (f"{a.m} sequential processes per client, one message of {a.size} bytes each, {what}; "
             f"medians of {a.runs} interleaved runs (server side on CPU 0, clients on CPU 1)")
    state_after = machine_state()
    print(f"\n{title}\n\nbefore: {state_before}\nafter:  {state_after}\n")
    floor = med.get("true", (0.0,))[0]
    print("| client | ms per message | (min–max) | above /bin/true | client CPU ms/msg | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in clients:
        m = med[c]
        r0 = [x[0] for x in res[c]]
        print(f"| {c} | {m[0]:.2f} | {min(r0):.2f}–{max(r0):.2f} | {m[0] - floor:.2f} | {m[1]:.2f} | {m[2]:.1f} |")
    write_json(a.json, title, state_before, state_after, [
        dict(client=c, ms=round(med[c][0], 2), ms_min=round(min(x[0] for x in res[c]), 2),
             ms_max=round(max(x[0] for x in res[c]), 2), above_true=round(med[c][0] - floor, 2),
             cpu_ms=round(med[c][1], 2), rss_mb=round(med[c][2], 1))
        for c in clients])
    print("\nThe issue's targets: smtpc <= 3 ms per message, >= 2.5x faster than curl, far ahead of msmtp.")
    print("\nRatios (peer's ms per message / smtpc's):")
    for mine in ("smtpc-send", "smtpc-sendmail"):
        if mine not in med:
            continue
        for c in clients:
            if c in ("true", "smtpc-send", "smtpc-sendmail") or (mine == "smtpc-sendmail" and c == "smtpc-linked"):
                continue
            print(f"- {mine} vs {c}: {med[c][0] / med[mine][0]:.2f}x faster")


if __name__ == "__main__":
    main()
