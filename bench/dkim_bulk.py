#!/usr/bin/python3
"""DKIM signing in bulk sending: msg/s of 10 KB messages over smtpc_bulk to
smtp-sink with no signature, Ed25519 and RSA-2048 on one and eight
connections (bench/dkim_bulk.c: signed on smtpc_bulk_set_dkim's thread pool,
one thread per CPU), and `openssl speed -seconds 3 rsa2048 ed25519` in the
same run: the signatures this machine can make at most.

Two ratios are printed for a signed run: signatures per second of the
client's CPU time (the whole process: signing, SMTP, the loop) against
openssl's signs per CPU second (which counts its own CPU time), i.e. how much
of the machine's signing capacity reaches the wire when signing is the
bottleneck; and msg/s against openssl's rate times the CPUs (the wall-clock
limit on an idle machine). Run it under `nice -n 10`: the machine is shared.

    nice -n 10 /usr/bin/python3 bench/dkim_bulk.py [--runs R] [--n N]
"""
import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def openssl_speed():
    p = subprocess.run(["openssl", "speed", "-seconds", "3", "rsa2048", "ed25519"], capture_output=True, text=True,
                       timeout=600, check=True)
    out = p.stdout
    rsa = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)", out, re.M)
    ed = re.search(r"^\s*253 bits EdDSA \(Ed25519\)\s+\S+s\s+\S+s\s+([\d.]+)", out, re.M)
    return float(rsa.group(1)), float(ed.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=4000)
    a = ap.parse_args()
    exe = benchlib.BUILD / "bench_dkim_bulk"
    benchlib.need(exe, "build first (cmake --build build)")
    before = benchlib.machine_state()
    tmp = Path(tempfile.mkdtemp(prefix="dkimbench"))
    keys = {"rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "ed": ["-algorithm", "ED25519"]}
    for k, args in keys.items():
        subprocess.run(["openssl", "genpkey", *args, "-out", str(tmp / f"{k}.pem")], check=True, capture_output=True)
        (tmp / f"{k}.pem").chmod(0o600)
    (tmp / "m.eml").write_bytes(benchlib.message(10240))
    sink = benchlib.Sink()
    cases = [("no signing", []), ("Ed25519", ["--key", f"ed={tmp / 'ed.pem'}"]),
             ("RSA-2048", ["--key", f"rsa={tmp / 'rsa.pem'}"])]
    res = {}
    try:
        for _ in range(a.runs):  # interleaved: every case once per round
            for name, extra in cases:
                for conns in (1, 8):
                    p = subprocess.run([str(exe), "--file", str(tmp / "m.eml"), "--n", str(a.n), "--conns", str(conns), *extra, "127.0.0.1",
                                        str(sink.port)], capture_output=True, text=True, timeout=600)
                    if p.returncode:
                        raise SystemExit(f"{name} {conns}: {p.stderr}")
                    f = dict(zip(p.stdout.split()[::2], map(float, p.stdout.split()[1::2])))
                    res.setdefault((name, conns), []).append((f["msg_s"], f["sent"] / f["cpu_s"]))
        rsa_lim, ed_lim = openssl_speed()
    finally:
        sink.stop()
    after = benchlib.machine_state()
    cpus = benchlib.os.cpu_count()
    print(f"before: {before}\nafter:  {after}\n")
    print(f"`openssl speed -seconds 3 rsa2048 ed25519` (same run): RSA-2048 {rsa_lim:,.0f} sign/s, "
          f"Ed25519 {ed_lim:,.0f} sign/s per CPU second\n")
    print("| signing | connections | msg/s (median; min–max) | msg per client CPU-second | of openssl's sign/s | "
          f"msg/s of openssl × {cpus} CPUs |")
    print("|---|---|---|---|---|---|")
    for name, _ in cases:
        lim = {"RSA-2048": rsa_lim, "Ed25519": ed_lim}.get(name)
        for conns in (1, 8):
            rows = res[(name, conns)]
            rates = [r[0] for r in rows]
            per_cpu = benchlib.median([r[1] for r in rows])
            m = benchlib.median(rates)
            print(f"| {name} | {conns} | {m:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | {per_cpu:,.0f} | "
                  + (f"{per_cpu / lim:.0%} |" if lim else "— |")
                  + (f" {m / (lim * cpus):.0%} |" if lim else " — |"))


if __name__ == "__main__":
    main()
