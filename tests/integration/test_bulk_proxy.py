"""Proxies in smtpc_bulk: every connection's non-blocking SOCKS4/4a/5/5h or
HTTP CONNECT handshake, against the real proxies (dante, microsocks,
tinyproxy; servers/proxies.py) in front of the private Postfix, and the
scripted proxy for what real ones do not show on demand (the greeting in the
same segment as the proxy's success reply, refusals)."""
import os
import re
import subprocess

import pytest

from conftest import driver
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.proxies import (http_auth_proxy, http_proxy, microsocks_auth_proxy,  # noqa: F401
                             socks5_proxy)
from servers.scripted_proxy import scripted_proxy  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401

MID = re.compile(rb"Message-ID: <(\d+)\.bulk@test>")


def run(host, port, count, conns, *opts, ca=None, proxy_ca=None, timeout=300):
    env = dict(os.environ)
    if ca:
        env["DRV_CA"] = ca
    if proxy_ca is not None:  # the "system" trust store for TLS to an https:// proxy
        env["SSL_CERT_FILE"] = proxy_ca
        env.pop("SSL_CERT_DIR", None)
    p = subprocess.run([driver("bulk"), host, str(port), str(count), str(conns), *map(str, opts)],
                       capture_output=True, timeout=timeout, env=env)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode() + out[-2000:]
    res = {}
    for line in out.splitlines():
        assert not line.startswith("DUPLICATE"), line
        if line.startswith("R "):
            f = line.split(" ", 6)
            assert int(f[1]) not in res, line
            res[int(f[1])] = dict(status=f[2], code=int(f[3]), err=f[5], msg=f[6] if len(f) > 6 else "")
    return res, out


def url_of(p, scheme):
    return scheme + p.url[p.url.index("://"):]


def delivered_once(pf, n):
    got = pf.wait_for(n, timeout=120)
    ids = sorted(int(MID.search(m.original_crlf).group(1)) for m in got)
    assert ids == list(range(n)), ids[:20]


@pytest.mark.parametrize("which,scheme,target", [
    ("socks5_proxy", "socks5h", "localhost"),      # dante, the proxy resolves the name
    ("socks5_proxy", "socks5", "localhost"),       # dante, resolved here
    ("socks5_proxy", "socks4a", "127.0.0.1"),      # dante speaks SOCKS4 on the same port
    ("socks5_proxy", "socks4", "127.0.0.1"),
    ("microsocks_auth_proxy", "socks5", "127.0.0.1"),  # username/password (RFC 1929)
    ("http_auth_proxy", "http", "127.0.0.1"),      # tinyproxy, Basic auth
])
def test_bulk_through_real_proxy(request, postfix, which, scheme, target):
    p = request.getfixturevalue(which)
    n = 40
    res, out = run(target, postfix.port, n, 4, "--proxy", url_of(p, scheme))
    assert len(res) == n and all(r["status"] == "SENT" for r in res.values()), out[-1500:]
    delivered_once(postfix, n)
    if p.impl == "dante":  # its log names the target of each CONNECT it passed
        assert re.search(rf"\.{postfix.port}\b", p.log()), p.log()[-2000:]


def test_bulk_implicit_tls_through_proxy(postfix, socks5_proxy):
    # the TLS handshake goes end to end, inside the tunnel
    res, out = run("localhost", postfix.smtps_port, 20, 2, "--proxy", url_of(socks5_proxy, "socks5h"),
                   "--tls", "implicit", "--user", "alice", "--password", postfix.users["alice"],
                   ca=postfix.ca_file)
    assert all(r["status"] == "SENT" for r in res.values()), out[-1500:]
    got = postfix.wait_for(20, timeout=120)
    assert all("TLS" in m.received for m in got)


def test_bulk_proxy_refuses_every_connection(postfix, http_auth_proxy):
    bad = url_of(http_auth_proxy, "http").replace(http_auth_proxy.password, "wrong-Pa55")
    res, out = run("127.0.0.1", postfix.port, 30, 3, "--proxy", bad, timeout=120)
    assert len(res) == 30 and all(r["status"] == "FAILED" and r["err"] == "SMTPC_EPROXY"
                                  for r in res.values()), out[-1500:]
    assert "wrong-Pa55" not in out
    assert postfix.settle() == []


@pytest.mark.parametrize("proto,scheme", [("http", "http"), ("socks5", "socks5h"), ("socks4", "socks4a")])
def test_bulk_greeting_with_the_proxy_reply(postfix, scripted_proxy, proto, scheme):
    # the success reply and the server's greeting in one segment: the layer
    # keeps the greeting, which the fd will never announce again
    px = scripted_proxy(proto, "forward", coalesce=True)
    res, out = run("localhost", postfix.port, 20, 2, "--proxy", f"{scheme}://127.0.0.1:{px.port}",
                   "--timeouts", "0,20000,0,0,0", timeout=120)
    assert all(r["status"] == "SENT" for r in res.values()), out[-1500:]
    assert 1 <= len(px.requests) <= 2 and all(r["host"] == "localhost" and r["port"] == postfix.port
                                              for r in px.requests), px.requests
    delivered_once(postfix, 20)


@pytest.mark.parametrize("coalesce", [False, True])
def test_bulk_https_proxy(postfix, scripted_proxy, stunnel_in_front_of, coalesce):
    # HTTP CONNECT inside TLS to the proxy (stunnel in front of the scripted
    # proxy), verified against the proxy's name; coalesced: the greeting sits
    # decrypted in the TLS layer under the proxy layer
    px = scripted_proxy("http", "forward", auth=("me", "px-Secret"), coalesce=coalesce)
    tls = stunnel_in_front_of(px.port)
    res, out = run("localhost", postfix.port, 20, 2, "--proxy", f"https://me:px-Secret@localhost:{tls.port}",
                   "--timeouts", "0,20000,0,0,0", proxy_ca=tls.ca_file, timeout=120)
    assert all(r["status"] == "SENT" for r in res.values()), out[-1500:]
    assert "px-Secret" not in out
    assert 1 <= len(px.requests) <= 2 and px.requests[0]["password"] == "px-Secret"
    delivered_once(postfix, 20)


def test_bulk_https_proxy_unverified(postfix, scripted_proxy, stunnel_in_front_of):
    # the proxy's certificate does not verify (another CA): no CONNECT, no
    # credentials sent; every message fails with the TLS error
    px = scripted_proxy("http", "forward")
    tls = stunnel_in_front_of(px.port)
    res, out = run("localhost", postfix.port, 5, 1, "--proxy", f"https://me:px-Secret@localhost:{tls.port}",
                   proxy_ca="/dev/null", timeout=120)
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_ETLS" and
               f"proxy https://me:***@localhost:{tls.port}: TLS to the proxy: " in r["msg"]
               for r in res.values()), out[-1500:]
    assert px.requests == [] and "px-Secret" not in out


@pytest.mark.parametrize("mode,err", [("silent", "SMTPC_ETIMEDOUT"), ("garbage", "SMTPC_EPROXY"),
                                      ("close", "SMTPC_EPROXY")])
def test_bulk_hostile_proxy(scripted_proxy, mode, err):
    # a proxy that never answers is bounded by the connect timeout; one that
    # answers nonsense or closes is a proxy error; every message is reported
    px = scripted_proxy("socks5", mode)
    res, out = run("localhost", 25, 10, 2, "--proxy", f"socks5h://127.0.0.1:{px.port}",
                   "--timeouts", "500,0,0,0,0", timeout=120)
    assert len(res) == 10 and all(r["status"] == "FAILED" and r["err"] == err for r in res.values()), \
        out[-1500:]


def test_bulk_cli_proxy(smtpc_bin, tmp_path, postfix, microsocks_auth_proxy):
    base = [smtpc_bin, "send", "--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--from", "a@example.org",
            "--to", "b@example.org", "--count", "20", "--connections", "2"]
    r = subprocess.run(base + ["--proxy", url_of(microsocks_auth_proxy, "socks5h")], capture_output=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and b"20 sent, 0 not sent" in r.stderr, r.stderr.decode()
    assert len(postfix.wait_for(20, timeout=120)) == 20
    bad = url_of(microsocks_auth_proxy, "socks5h").replace("smtpc-pass%20w%3Ard", "wrong-Pa55")
    assert bad != url_of(microsocks_auth_proxy, "socks5h")
    r = subprocess.run(base + ["--proxy", bad, "--quiet"], capture_output=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 75, r.stderr.decode()
    assert b"wrong-Pa55" not in r.stdout + r.stderr
    r = subprocess.run(base + ["--proxy", "ftp://127.0.0.1:1"], capture_output=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 78 and b"--proxy: " in r.stderr, r.stderr.decode()  # EX_CONFIG, as a single send
