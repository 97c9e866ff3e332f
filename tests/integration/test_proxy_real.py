"""Interoperability with real proxies (servers/proxies.py): dante and
microsocks (SOCKS5, no-auth and username/password), tinyproxy (HTTP CONNECT,
Basic auth, ConnectPort), and the private Postfix reached through each.
dante with CONNECT rules (for the "not allowed by ruleset" refusal) is
started here: the shared fixtures do not do rules.
"""
import os
import socket
import subprocess
import time

import pytest

from conftest import driver
from servers.certs import certs  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.proxies import (HTTP_PASSWORD, MICROSOCKS_PASSWORD, SOCKS_PASSWORD,  # noqa: F401
                             http_auth_proxy, http_proxy, microsocks_auth_proxy,
                             microsocks_proxy, proxy_factory, socks5_auth_proxy, socks5_proxy,
                             start_tinyproxy)
from servers.scripted_proxy import echo_target  # noqa: F401

SECRETS = [HTTP_PASSWORD, MICROSOCKS_PASSWORD, SOCKS_PASSWORD, "wrong-Pa55"]


def run(url, host, port, timeout_ms=15000):
    r = subprocess.run([driver("proxy"), url, host, str(port), str(timeout_ms)],
                       capture_output=True, timeout=60)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    for s in SECRETS:
        assert s not in out, out
    return r.returncode, out


def ok(rc, out):
    assert rc == 0, out
    assert "GREETING: 220 target ready\n" in out and "ECHO: PING through proxy\n" in out, out


def with_scheme(url, scheme):
    return scheme + url[url.index("://"):]


def with_password(url, pw):
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    return f"{scheme}://{cred.split(':')[0]}:{pw}@{host}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def target(echo_target):
    return echo_target()


# ---- SOCKS5 -------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
@pytest.mark.parametrize("which", ["socks5_proxy", "microsocks_proxy"])
def test_socks5_noauth(request, target, which, scheme):
    p = request.getfixturevalue(which)
    ok(*run(with_scheme(p.url, scheme), "127.0.0.1", target.port))
    ok(*run(with_scheme(p.url, scheme), "localhost", target.port))


@pytest.mark.parametrize("which", ["socks5_auth_proxy", "microsocks_auth_proxy"])
def test_socks5_userpass(request, target, which):
    p = request.getfixturevalue(which)
    # the URL percent-encodes the password ("smtpc-pass w:rd" has a space and a colon)
    ok(*run(with_scheme(p.url, "socks5h"), "127.0.0.1", target.port))
    rc, out = run(with_password(with_scheme(p.url, "socks5h"), "wrong-Pa55"), "127.0.0.1",
                  target.port)
    assert rc == 1
    assert "ERROR SMTPC_EPROXY: SOCKS5 proxy socks5h://" in out
    assert "authentication failed: the proxy rejected the user name or password" in out, out
    rc, out = run(f"socks5h://{p.host}:{p.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert "authentication required: the proxy accepted none of the offered methods " \
           "(no authentication)" in out, out


def test_microsocks_target_refused(microsocks_proxy):
    port = free_port()
    rc, out = run(with_scheme(microsocks_proxy.url, "socks5h"), "127.0.0.1", port)
    assert rc == 1
    assert f"CONNECT to 127.0.0.1:{port} failed: connection refused (reply 0x05)" in out, out


@pytest.fixture
def dante_rules(tmp_path):
    """danted allowing CONNECT to 127.0.0.1:allow_port only (SOCKS4 and 5)."""
    exe = "/usr/sbin/danted"
    if not os.path.exists(exe):
        pytest.skip("danted not installed (scripts/deps/proxy.txt)")
    procs = []

    def start(allow_port):
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
        log = open(tmp_path / f"danted-{port}.log", "wb")
        proc = subprocess.Popen([exe, "-f", str(conf), "-N", "1",
                                 "-p", str(tmp_path / f"danted-{port}.pid")],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return port
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError((tmp_path / f"danted-{port}.log").read_text())
                time.sleep(0.05)

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a"])
def test_dante_ruleset(dante_rules, target, scheme):
    port = dante_rules(allow_port=target.port)
    ok(*run(f"{scheme}://127.0.0.1:{port}", "127.0.0.1", target.port))
    other = free_port()
    rc, out = run(f"{scheme}://127.0.0.1:{port}", "127.0.0.1", other)
    assert rc == 1
    if scheme.startswith("socks5"):
        assert f"CONNECT to 127.0.0.1:{other} failed: connection not allowed by ruleset " \
               "(reply 0x02)" in out, out
    else:
        assert f"CONNECT to 127.0.0.1:{other} refused: request rejected or failed " \
               "(reply 0x5b)" in out, out


# ---- HTTP CONNECT (tinyproxy) ---------------------------------------------------

def test_tinyproxy_connect(http_proxy, target):
    ok(*run(http_proxy.url, "127.0.0.1", target.port))
    ok(*run(http_proxy.url, "localhost", target.port))


def test_tinyproxy_basic_auth(http_auth_proxy, target):
    p = http_auth_proxy
    ok(*run(p.url, "127.0.0.1", target.port))
    rc, out = run(f"http://{p.host}:{p.port}", "127.0.0.1", target.port)
    assert rc == 1
    assert "proxy authentication required (407 " in out and "no credentials configured" in out
    assert "the proxy asks for: Basic realm=" in out, out
    rc, out = run(with_password(p.url, "wrong-Pa55"), "127.0.0.1", target.port)
    assert rc == 1
    # tinyproxy answers 401 to wrong credentials: still an authentication failure in words
    assert "proxy authentication required (401 " in out
    assert "the credentials were rejected" in out, out


def test_tinyproxy_connect_port_forbidden(proxy_factory, target):
    p = proxy_factory(start_tinyproxy, connect_ports=[443])
    rc, out = run(p.url, "127.0.0.1", target.port)
    assert rc == 1
    assert f"CONNECT to 127.0.0.1:{target.port} forbidden by the proxy (403 " in out, out


# ---- a real SMTP server behind each real proxy -----------------------------------

@pytest.mark.parametrize("which,scheme", [
    ("socks5_proxy", "socks5h"), ("microsocks_auth_proxy", "socks5"),
    ("http_auth_proxy", "http"), ("socks5_proxy", "socks4a"),
])
def test_postfix_behind_proxy(request, postfix, which, scheme):
    p = request.getfixturevalue(which)
    if scheme == "socks4a":  # dante speaks SOCKS4 on the same port
        url = f"socks4a://{p.host}:{p.port}"
    else:
        url = with_scheme(p.url, scheme)
    rc, out = run(url, "127.0.0.1", postfix.port)
    assert rc == 0, out
    greeting = next(ln for ln in out.splitlines() if ln.startswith("GREETING: "))
    assert greeting.startswith("GREETING: 220 "), out
    # Postfix answers our "PING" line with a 5xx: the tunnel carries both ways
    assert "ECHO: 5" in out, out

