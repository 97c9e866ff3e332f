"""Helpers shared by the benchmark scripts of bench/ (not a script itself).

Servers: Postfix's smtp-sink (pinned to CPU 0), optionally behind stunnel
(implicit TLS, also pinned to CPU 0, certificate from a throwaway CA made with
the openssl CLI). Clients are pinned to CPU 1 and measured by bench_rusage
(wall time, user+sys CPU and peak RSS of the client process from wait4).
"""
import json
import os
import re
import shutil
import socket
import statistics
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = Path(os.environ.get("SMTPC_BUILD_DIR", ROOT / "build"))
NODE_DIR = HERE / "node"
SINK_CPU, CLIENT_CPU = "0", "1"
FROM, RCPT = "a@example.org", "b@example.org"


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


def stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Sink:
    """smtp-sink on 127.0.0.1:<free port>, pinned to SINK_CPU."""

    def __init__(self, cpu=SINK_CPU, backlog=1000):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, "/usr/sbin/smtp-sink", "-u", "nobody",
             f"127.0.0.1:{self.port}", str(backlog)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        stop(self.proc)


class Certs:
    """A self-signed certificate for localhost / 127.0.0.1 (EC P-256), its own CA."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="smtpc-bench-certs-")
        self.cert = os.path.join(self.dir, "server.crt")
        self.key = os.path.join(self.dir, "server.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "3", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ca_file = self.cert

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Tunnel:
    """stunnel (implicit TLS) on a free port in front of target_port, pinned to SINK_CPU.
    .connections() counts the connections it accepted (from its log)."""

    def __init__(self, certs, target_port, cpu=SINK_CPU):
        self.dir = tempfile.mkdtemp(prefix="smtpc-bench-stunnel-")
        self.log = os.path.join(self.dir, "stunnel.log")
        self.port = free_port()
        conf = os.path.join(self.dir, "stunnel.conf")
        with open(conf, "w") as f:
            f.write(f"foreground = yes\npid =\nsyslog = no\noutput = {self.log}\ndebug = 5\n\n[tls]\n"
                    f"accept = 127.0.0.1:{self.port}\nconnect = 127.0.0.1:{target_port}\n"
                    f"cert = {certs.cert}\nkey = {certs.key}\n")
        self.proc = subprocess.Popen(["taskset", "-c", cpu, "/usr/bin/stunnel4", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        end = time.time() + 2  # wait_port's own probe, once stunnel has logged it
        while self.connections() < 1 and time.time() < end:
            time.sleep(0.01)
        self.base = self.connections()

    def connections(self):
        try:
            with open(self.log, errors="replace") as f:
                return len(re.findall(r"Service \[tls\] accepted connection", f.read()))
        except OSError:
            return 0

    def stop(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def message(size):
    """The benchmark message: 3 header fields, then 78-octet lines, `size` bytes in all."""
    hdr = f"From: {FROM}\r\nTo: {RCPT}\r\nSubject: bench\r\n\r\n"
    line = "x" * 76 + "\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(hdr))]
    if size - len(hdr) >= 2:
        body = body[:-2] + "\r\n"
    return (hdr + body).encode()


def run_measured(cmd, cpu=CLIENT_CPU, env=None, stdin=None, timeout=3600):
    """Runs cmd pinned to cpu through bench_rusage; returns (wall s, cpu s, peak RSS MB, stderr)."""
    p = subprocess.run(["taskset", "-c", cpu, str(BUILD / "bench_rusage"), *cmd], env=env, stdin=stdin,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:200]} failed ({p.returncode}): {err[-800:]}")
    line = [l for l in err.splitlines() if l.startswith("RUSAGE ")][-1].split()
    return float(line[1]), float(line[2]), int(line[3]) / 1024.0, err


def median(xs):
    return statistics.median(xs)


def machine_state():
    """One line: date, load average, CPU count, kernel."""
    la = os.getloadavg()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
            f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, {os.cpu_count()} CPUs, {os.uname().release}")


def need(path, hint):
    if not Path(path).exists():
        raise SystemExit(f"{path} missing: {hint}")


def need_node():
    need(NODE_DIR / "node_modules" / "nodemailer", "run bench/setup.sh (installs nodemailer with npm)")


def command_line():
    """How this script was run, as bench/README.md shows it (without --json PATH)."""
    args, skip = [], False
    for x in sys.argv[1:]:
        if skip:
            skip = False
        elif x == "--json":
            skip = True
        elif not x.startswith("--json="):
            args.append(shlex.quote(x))
    return " ".join(["/usr/bin/python3", f"bench/{Path(sys.argv[0]).name}", *args])


def write_json(path, title, before, after, rows):
    """The table just printed, machine-readable (bench/plot.py reads it): the
    figures rounded as the table shows them, with the command and the machine
    state before and after."""
    if not path:
        return
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    with open(path, "w") as f:
        json.dump({"title": title, "command": command_line(), "before": before, "after": after, "commit": commit,
                   "rows": rows}, f, indent=1, ensure_ascii=False)
        f.write("\n")
