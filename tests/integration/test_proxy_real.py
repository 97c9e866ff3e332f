"""Interoperability with real proxies: microsocks (SOCKS5 + user/pass),
danted (SOCKS4/5 with rules) and tinyproxy (HTTP CONNECT + Basic auth).

Each proxy is a private instance on 127.0.0.1 on a free port, started and
stopped here. (Until the shared fixtures in servers/proxies.py exist, the
launchers are local to this file.) A proxy whose binary is missing skips its
tests; one that is installed but fails to start fails them.
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import driver
from servers.scripted_proxy import echo_target  # noqa: F401

SECRET = "s3cr3t-Pa55"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, log, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"proxy not listening on {port}: {log.read_text()[-2000:]}")


class Daemon:
    def __init__(self, argv, port, log):
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_port(port, self.proc, log)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def need(binary):
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if not path:
        pytest.skip(f"{binary} not installed (scripts/deps/proxy.txt)")
    return path


@pytest.fixture
def target(echo_target):
    return echo_target()


@pytest.fixture
def microsocks(tmp_path):
    exe = need("microsocks")
    made = []

    def start(auth=None):
        port = free_port()
        argv = [exe, "-i", "127.0.0.1", "-p", str(port)]
        if auth:
            argv += ["-u", auth[0], "-P", auth[1]]
        d = Daemon(argv, port, tmp_path / f"microsocks-{port}.log")
        made.append(d)
        return d

    yield start
    for d in made:
        d.stop()


@pytest.fixture
def tinyproxy(tmp_path):
    exe = need("tinyproxy")
    made = []

    def start(auth=None, connect_ports=()):
        port = free_port()
        conf = tmp_path / f"tinyproxy-{port}.conf"
        lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", "MaxClients 20",
                 "Allow 127.0.0.1", "LogLevel Info"]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        lines += [f"ConnectPort {p}" for p in connect_ports]
        conf.write_text("\n".join(lines) + "\n")
        d = Daemon([exe, "-d", "-c", str(conf)], port, tmp_path / f"tinyproxy-{port}.log")
        made.append(d)
        return d

    yield start
    for d in made:
        d.stop()


@pytest.fixture
def danted(tmp_path):
    exe = need("danted")
    made = []

    def start(allow_port):
        """SOCKS4/5 without auth, CONNECT allowed to 127.0.0.1:allow_port only."""
        port = free_port()
        conf = tmp_path / f"danted-{port}.conf"
        lines = ["logoutput: stderr", f"internal: 127.0.0.1 port = {port}",
                 "external: 127.0.0.1", "socksmethod: none", "clientmethod: none"]
        if os.geteuid() == 0:
            lines += ["user.privileged: root", "user.unprivileged: nobody"]
        lines += ["client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
                  f"socks pass {{ from: 127.0.0.0/8 to: 127.0.0.1/32 port = {allow_port} }}",
                  "socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 }"]
        conf.write_text("\n".join(lines) + "\n")
        d = Daemon([exe, "-f", str(conf), "-N", "1", "-p", str(tmp_path / f"danted-{port}.pid")],
                   port, tmp_path / f"danted-{port}.log")
        made.append(d)
        return d

    yield start
    for d in made:
        d.stop()


def run(url, host, port, timeout_ms=15000):
    r = subprocess.run([driver("proxy"), url, host, str(port), str(timeout_ms)],
                       capture_output=True, timeout=60)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    assert SECRET not in out, out
    return r.returncode, out


def ok(rc, out):
    assert rc == 0, out
    assert "GREETING: 220 target ready\n" in out and "ECHO: PING through proxy\n" in out, out


# ---- microsocks ----

@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_microsocks_noauth(microsocks, target, scheme):
    px = microsocks()
    ok(*run(f"{scheme}://127.0.0.1:{px.port}", "127.0.0.1", target.port))


def test_microsocks_userpass(microsocks, target):
    px = microsocks(auth=("alice", SECRET))
    ok(*run(f"socks5h://alice:{SECRET}@127.0.0.1:{px.port}", "127.0.0.1", target.port))
    rc, out = run(f"socks5h://alice:wrong@127.0.0.1:{px.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert "ERROR SMTPC_EPROXY: " in out and "authentication failed: the proxy rejected the " \
        "user name or password" in out, out
    rc, out = run(f"socks5h://127.0.0.1:{px.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert "authentication required: the proxy accepted none of the offered methods" in out, out


def test_microsocks_target_refused(microsocks):
    px = microsocks()
    port = free_port()
    rc, out = run(f"socks5h://127.0.0.1:{px.port}", "127.0.0.1", port)
    assert rc == 1
    assert f"CONNECT to 127.0.0.1:{port} failed: connection refused (reply 0x05)" in out, out


# ---- dante ----

@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a"])
def test_dante_pass_and_block(danted, target, scheme):
    px = danted(allow_port=target.port)
    ok(*run(f"{scheme}://127.0.0.1:{px.port}", "127.0.0.1", target.port))
    other = free_port()
    rc, out = run(f"{scheme}://127.0.0.1:{px.port}", "127.0.0.1", other)
    assert rc == 1
    if scheme.startswith("socks5"):
        assert f"CONNECT to 127.0.0.1:{other} failed: connection not allowed by ruleset " \
               "(reply 0x02)" in out, out
    else:
        assert f"CONNECT to 127.0.0.1:{other} refused: request rejected or failed " \
               "(reply 0x5b)" in out, out


# ---- tinyproxy ----

def test_tinyproxy_connect(tinyproxy, target):
    px = tinyproxy()
    ok(*run(f"http://127.0.0.1:{px.port}", "127.0.0.1", target.port))
    ok(*run(f"http://127.0.0.1:{px.port}", "localhost", target.port))


def test_tinyproxy_basic_auth(tinyproxy, target):
    px = tinyproxy(auth=("bob", SECRET))
    ok(*run(f"http://bob:{SECRET}@127.0.0.1:{px.port}", "127.0.0.1", target.port))
    rc, out = run(f"http://127.0.0.1:{px.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert "proxy authentication required (407 " in out and "no credentials configured" in out
    assert "the proxy asks for: Basic realm=" in out, out
    rc, out = run(f"http://bob:wrong@127.0.0.1:{px.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert "proxy authentication required (40" in out and "the credentials were rejected" in out


def test_tinyproxy_connect_port_forbidden(tinyproxy, target):
    px = tinyproxy(connect_ports=(443,))
    rc, out = run(f"http://127.0.0.1:{px.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert f"CONNECT to 127.0.0.1:{target.port} forbidden by the proxy (403 " in out, out
