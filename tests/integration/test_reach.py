"""Reaching the server: real proxies wired into the session and the CLI,
bind address, -4/-6, IPv6 literals, Happy Eyeballs.

drv_reach (tests/integration/drv_reach.c) sends one message with the
session API (smtpc_session_open: TLS and AUTH as configured); the CLI is
`smtpc send`. Proxies (servers/proxies.py): dante and microsocks (SOCKS5,
with and without username/password), tinyproxy (HTTP CONNECT, with and
without Basic auth); SOCKS4/4a and https:// through the scripted proxy and
stunnel. No proxy password may ever appear in any output.
"""
import os
import socket
import subprocess
import time

import pytest

from conftest import BUILD_DIR, driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.certs import certs  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.proxies import (HTTP_PASSWORD, MICROSOCKS_PASSWORD, SOCKS_PASSWORD,  # noqa: F401
                             http_auth_proxy, http_proxy, microsocks_auth_proxy,
                             microsocks_proxy, socks5_auth_proxy, socks5_proxy)
from servers.scripted_proxy import scripted_proxy  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401

SECRETS = [HTTP_PASSWORD, MICROSOCKS_PASSWORD, SOCKS_PASSWORD, "wrong-Pa55", "s3cr3t-Pa55"]
PROXIES = ["socks5_proxy", "socks5_auth_proxy", "microsocks_proxy", "microsocks_auth_proxy",
           "http_proxy", "http_auth_proxy"]


def no_secret(out):
    for s in SECRETS:
        assert s not in out, out
        assert s.replace(" ", "%20") not in out, out


def drv(host, port, *args, env=None, timeout=60):
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([driver("reach"), host, str(port), *map(str, args)], capture_output=True,
                       timeout=timeout, env=e)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    no_secret(out)
    return r.returncode, out


def cli(*args, timeout=60, env=None):
    e = dict(os.environ, **(env or {}))
    e.pop("SMTPC_ACCOUNT", None)
    e["HOME"] = "/nonexistent"
    e["XDG_CONFIG_HOME"] = "/nonexistent"
    r = subprocess.run([str(BUILD_DIR / "smtpc"), "send", "--from", "a@example.org", "--to",
                        "b@example.net", "--subject", "reach", "--text", "hello", *map(str, args)],
                       capture_output=True, timeout=timeout, env=e)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    no_secret(out)
    return r.returncode, out


def open_ms(out):
    for line in out.splitlines():
        if line.startswith("OPEN_MS: "):
            return int(line.split()[1])
    raise AssertionError(out)


def socks5h(p):
    return p.url.replace("socks5://", "socks5h://", 1)


# ---- through every real proxy, session API ----------------------------------

@pytest.mark.parametrize("which", PROXIES)
def test_api_each_proxy_to_aiosmtpd(request, aiosmtpd, which):
    p = request.getfixturevalue(which)
    srv = aiosmtpd()
    urls = [p.url] + ([socks5h(p)] if p.kind == "socks5" else [])
    for url in urls:
        rc, out = drv("127.0.0.1", srv.port, "--proxy", url)
        assert rc == 0 and "OK 250" in out, out
    assert len(srv.envelopes) == len(urls)
    assert srv.envelopes[0].rcpt_tos == ["b@example.net"]


@pytest.mark.parametrize("which", PROXIES)
def test_api_each_proxy_to_postfix_plain_and_starttls_auth(request, postfix, which):
    p = request.getfixturevalue(which)
    url = socks5h(p) if p.kind == "socks5" else p.url
    rc, out = drv("127.0.0.1", postfix.port, "--proxy", url)
    assert rc == 0 and "SECURITY: none" in out and "OK 250" in out, out
    # STARTTLS + AUTH on the submission port, the certificate checked against
    # "localhost" (the mail server's name, resolved by the proxy for socks5h)
    rc, out = drv("localhost", postfix.submission_port, "--proxy", url, "--tls", "starttls",
                  "--ca", postfix.ca_file, "--user", postfix.user, "--to", "c@example.net",
                  env={"DRV_PASSWORD": postfix.password})
    assert rc == 0, out
    assert "SECURITY: starttls" in out and "OK 250" in out and "AUTH: none" not in out, out
    # implicit TLS (smtps) through the same proxy
    rc, out = drv("localhost", postfix.smtps_port, "--proxy", url, "--tls", "implicit",
                  "--ca", postfix.ca_file, "--user", postfix.user, "--to", "d@example.net",
                  env={"DRV_PASSWORD": postfix.password})
    assert rc == 0 and "SECURITY: implicit" in out and "OK 250" in out, out
    msgs = {m.rcpt_to: m for m in postfix.wait_for(3)}
    assert set(msgs) == {"b@example.net", "c@example.net", "d@example.net"}
    assert "TLS" in msgs["c@example.net"].received, msgs["c@example.net"].received
    assert "TLS" in msgs["d@example.net"].received


def test_certificate_checked_against_mail_server_not_proxy(socks5_proxy, postfix):
    # the proxy is 127.0.0.1 (in the certificate's SANs); the server's
    # certificate names another host: verification must fail.
    port = postfix.starttls_ports["wrong_host"]
    rc, out = drv("localhost", port, "--proxy", socks5h(socks5_proxy), "--tls", "starttls",
                  "--ca", postfix.ca_file)
    assert rc == 1 and "ERROR SMTPC_ETLS" in out, out
    assert postfix.settle() == []


# ---- SOCKS4/4a and https:// proxies (scripted proxy, stunnel) ------------------

@pytest.mark.parametrize("scheme", ["socks4", "socks4a", "socks5", "http"])
def test_api_scripted_proxies(scripted_proxy, aiosmtpd, scheme):
    srv = aiosmtpd()
    proto = {"socks4a": "socks4"}.get(scheme, scheme)
    px = scripted_proxy(proto, "forward")
    rc, out = drv("localhost", srv.port, "--proxy", f"{scheme}://127.0.0.1:{px.port}")
    assert rc == 0 and "OK 250" in out, out
    assert len(px.requests) == 1 and len(srv.envelopes) == 1


def test_api_https_proxy(scripted_proxy, stunnel_in_front_of, aiosmtpd):
    srv = aiosmtpd()
    px = scripted_proxy("http", "forward", auth=("me", "s3cr3t-Pa55"))
    tls = stunnel_in_front_of(px.port)
    rc, out = drv("127.0.0.1", srv.port, "--proxy", f"https://me:s3cr3t-Pa55@localhost:{tls.port}",
                  env={"SSL_CERT_FILE": tls.ca_file})
    assert rc == 0 and "OK 250" in out, out
    assert px.requests[0]["password"] == "s3cr3t-Pa55"
    # the proxy's certificate is verified: unknown CA -> TLS error naming the proxy, redacted
    rc, out = drv("127.0.0.1", srv.port, "--proxy", f"https://me:s3cr3t-Pa55@localhost:{tls.port}",
                  env={"SSL_CERT_FILE": "/dev/null"})
    assert rc == 1 and "ERROR SMTPC_ETLS" in out and "https://me:***@localhost" in out, out
    # the CLI, the same way (the proxy's CA from OpenSSL's SSL_CERT_FILE)
    rc, out = cli("--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--proxy",
                  f"https://me:s3cr3t-Pa55@localhost:{tls.port}", env={"SSL_CERT_FILE": tls.ca_file})
    assert rc == 0, out
    assert len(srv.envelopes) == 2


# ---- the CLI ------------------------------------------------------------------

@pytest.mark.parametrize("which", PROXIES)
def test_cli_each_proxy(request, aiosmtpd, which):
    p = request.getfixturevalue(which)
    srv = aiosmtpd()
    url = socks5h(p) if p.kind == "socks5" else p.url
    rc, out = cli("--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--proxy", url)
    assert rc == 0, out
    assert len(srv.envelopes) == 1


@pytest.mark.parametrize("which", PROXIES)
def test_cli_each_proxy_postfix_starttls_auth(request, postfix, which):
    p = request.getfixturevalue(which)
    url = socks5h(p) if p.kind == "socks5" else p.url
    rc, out = cli("--server", f"localhost:{postfix.submission_port}", "--tls", "starttls",
                  "--ca-file", postfix.ca_file, "--user", postfix.user, "--password-env",
                  "REACH_PW", "--proxy", url, env={"REACH_PW": postfix.password})
    assert rc == 0, out
    assert postfix.password not in out
    [m] = postfix.wait_for(1)
    assert "TLS" in m.received, m.received


def test_cli_probe_through_proxy(http_auth_proxy, postfix):
    e = dict(os.environ, HOME="/nonexistent", XDG_CONFIG_HOME="/nonexistent")
    r = subprocess.run([str(BUILD_DIR / "smtpc"), "probe", "--server", f"localhost:{postfix.port}",
                        "--tls", "none", "--proxy", http_auth_proxy.url], capture_output=True,
                       timeout=60, env=e)
    out = r.stdout.decode() + r.stderr.decode()
    no_secret(out)
    assert r.returncode == 0, out
    assert "CHUNKING" in out, out


def test_cli_proxy_from_configuration(tmp_path, microsocks_auth_proxy, aiosmtpd):
    srv = aiosmtpd()
    cfg = tmp_path / "smtpc.conf"
    cfg.write_text(f"server = 127.0.0.1:{srv.port}\ntls = none\nproxy = {microsocks_auth_proxy.url}\n")
    cfg.chmod(0o600)
    rc, out = cli("--config", cfg)
    assert rc == 0, out
    assert len(srv.envelopes) == 1
    # the configuration's proxy is really used: a wrong password there fails
    bad = microsocks_auth_proxy.url.replace("smtpc-pass%20w%3Ard", "wrong-Pa55")
    assert bad != microsocks_auth_proxy.url
    cfg.write_text(f"server = 127.0.0.1:{srv.port}\ntls = none\nproxy = {bad}\n")
    rc, out = cli("--config", cfg)
    assert rc == 75, out
    assert len(srv.envelopes) == 1


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_cli_proxy_errors(aiosmtpd, socks5_proxy, microsocks_auth_proxy, http_auth_proxy,
                          scripted_proxy):
    """Each failure: a message in words, the documented exit status, no password."""
    srv = aiosmtpd()
    base = ["--server", f"127.0.0.1:{srv.port}", "--tls", "none"]
    m = microsocks_auth_proxy
    cases = [
        # wrong SOCKS5 password: the proxy refuses (75, EX_TEMPFAIL)
        (["--proxy", f"socks5h://{m.username}:wrong-Pa55@127.0.0.1:{m.port}"], 75,
         "authentication"),
        # HTTP proxy that needs credentials, none given: 407
        (["--proxy", f"http://127.0.0.1:{http_auth_proxy.port}"], 75, "407"),
        # wrong HTTP credentials (tinyproxy says 401)
        (["--proxy", f"http://proxyuser:wrong-Pa55@127.0.0.1:{http_auth_proxy.port}"], 75, "401"),
        # nobody listens at the proxy's address
        (["--proxy", f"socks5h://u:wrong-Pa55@127.0.0.1:{closed_port()}"], 75,
         "Connection refused"),
        # the proxy cannot reach the target (dante: reply 05)
        (["--server", f"127.0.0.1:{closed_port()}", "--proxy", socks5h(socks5_proxy)], 75,
         "connection refused (reply 0x05)"),
        # a malformed URL: configuration error (78, EX_CONFIG), said before any connection
        (["--proxy", "socks9://u:wrong-Pa55@127.0.0.1:1"], 78, "unknown scheme"),
        # a proxy host that does not resolve: 68 (EX_NOHOST)
        (["--proxy", "http://u:wrong-Pa55@no-such-proxy.invalid:3128"], 68, "cannot resolve"),
        # socks5:// resolves the target locally: an unresolvable server is 68 too
        (["--server", "no-such-mx.invalid:25", "--proxy", socks5_proxy.url], 68, "no-such-mx.invalid"),
    ]
    for extra, code, words in cases:
        args = base + extra if extra[0] != "--server" else extra + base[2:]
        rc, out = cli(*args)
        assert rc == code, (extra, out)
        assert words in out, (extra, out)
        if "wrong-Pa55" in " ".join(extra) and code != 78:
            assert "***" in out, (extra, out)
    assert srv.envelopes == []


def test_cli_proxy_silent_is_bounded_by_connect_timeout(scripted_proxy, aiosmtpd):
    srv = aiosmtpd()
    for proto, scheme in (("socks5", "socks5h"), ("http", "http")):
        px = scripted_proxy(proto, "silent")
        t0 = time.monotonic()
        rc, out = cli("--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--connect-timeout",
                      "1s", "--proxy", f"{scheme}://u:wrong-Pa55@127.0.0.1:{px.port}")
        el = time.monotonic() - t0
        assert rc == 75, out
        assert "timed out after 1 s" in out or "timed out after 1s" in out, out
        assert "did not complete the handshake" in out, out
        assert el < 8, el


# ---- bind, -4/-6, IPv6 literals ------------------------------------------------

def test_bind_source_address(postfix):
    rc, out = drv("127.0.0.1", postfix.port, "--bind", "127.0.0.2")
    assert rc == 0, out
    rc, out = cli("--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--bind", "127.0.0.2")
    assert rc == 0, out
    msgs = postfix.wait_for(2)
    for m in msgs:
        assert "[127.0.0.2]" in m.received, m.received


def test_bind_address_and_port(postfix, aiosmtpd):
    srv = aiosmtpd()
    lp = closed_port()
    rc, out = cli("--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--bind",
                  f"127.0.0.3:{lp}")
    assert rc == 0, out
    assert srv.peers[0][:2] == ("127.0.0.3", lp), srv.peers
    rc, out = drv("127.0.0.1", srv.port, "--bind", "127.0.0.4", "--bind-port", lp)
    assert rc == 0, out
    assert srv.peers[1][:2] == ("127.0.0.4", lp), srv.peers
    # an address of the other family cannot be bound: a clear error
    rc, out = cli("--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--bind", "::1")
    assert rc == 68 and "no IPv6 address (the family of the bind address)" in out, out
    rc, out = cli("--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--bind", "192.0.2.1")
    assert rc == 75 and "cannot bind to 192.0.2.1" in out, out
    rc, out = cli("--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--bind", "a b")
    assert rc != 0, out


def test_family_with_localhost(aiosmtpd):
    """'localhost' as a stock /etc/hosts has it (::1 and 127.0.0.1; the
    driver's resolver shim), a server on one family only."""
    v6 = aiosmtpd(host="::1")
    v4 = aiosmtpd()
    rc, out = drv("localhost", v6.port, "--dual-localhost", "--family", 6)
    assert rc == 0, out
    rc, out = drv("localhost", v4.port, "--dual-localhost", "--family", 4)
    assert rc == 0, out
    rc, out = drv("localhost", v6.port, "--dual-localhost", "--family", 4)
    assert rc == 1 and "Connection refused" in out, out
    rc, out = drv("localhost", v4.port, "--dual-localhost", "--family", 6)
    assert rc == 1 and "Connection refused" in out, out
    assert len(v6.envelopes) == 1 and len(v4.envelopes) == 1


def test_cli_family_and_ipv6_literal(aiosmtpd):
    v6 = aiosmtpd(host="::1")
    v4 = aiosmtpd()
    rc, out = cli("--server", f"[::1]:{v6.port}", "--tls", "none")
    assert rc == 0, out
    rc, out = cli("--server", f"[::1]:{v6.port}", "--tls", "none", "-6")
    assert rc == 0, out
    rc, out = cli("--server", f"[::1]:{v6.port}", "--tls", "none", "-4")
    assert rc == 68 and "no IPv4 address" in out, out
    rc, out = cli("--server", f"localhost:{v4.port}", "--tls", "none", "-4")
    assert rc == 0, out
    has_v6_localhost = any(a[0] == socket.AF_INET6 for a in socket.getaddrinfo("localhost", 25))
    rc, out = cli("--server", f"localhost:{v6.port}", "--tls", "none", "-6")
    if has_v6_localhost:
        assert rc == 0, out
    else:
        assert rc == 68 and "no IPv6 address" in out, out
    rc, out = cli("--server", f"[::1]:{v6.port}", "--tls", "none", "-4", "-6")
    assert rc == 78 and "-4 and -6" in out, out
    assert len(v6.envelopes) == 2 + has_v6_localhost and len(v4.envelopes) == 1


# ---- Happy Eyeballs --------------------------------------------------------------

def black_hole(family, port):
    """A listener on `port` whose accept queue is full: SYNs are dropped."""
    addr = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    l = socket.socket(family)
    l.bind((addr, port))
    l.listen(0)
    fill = []
    for _ in range(8):
        c = socket.socket(family)
        c.setblocking(False)
        try:
            c.connect((addr, port))
        except BlockingIOError:
            pass
        fill.append(c)
        import select
        if not select.select([], [c], [], 0.15)[1]:
            return l, fill
    for c in fill:
        c.close()
    l.close()
    pytest.skip("cannot make a black hole on this kernel")


def test_happy_eyeballs_black_holed_ipv6(aiosmtpd):
    srv = None
    for _ in range(10):  # the IPv4 server's port must be free on ::1 too
        s = aiosmtpd()
        try:
            hole = black_hole(socket.AF_INET6, s.port)
            srv = s
            break
        except OSError:
            continue
    assert srv, "no port free on both families"
    lsock, fill = hole
    try:
        rc, out = drv("localhost", srv.port, "--dual-localhost", "--connect-timeout-ms", 10000)
        assert rc == 0, out
        ms = open_ms(out)  # connect (+250 ms fallback) + greeting + EHLO
        print(f"happy eyeballs: delivered through 127.0.0.1 after {ms} ms (::1 black-holed)")
        assert 245 <= ms < 2000, out
        assert len(srv.envelopes) == 1
        # without Happy Eyeballs a black hole costs the whole connect timeout
        rc, out = drv("localhost", srv.port, "--dual-localhost", "--family", 6,
                      "--connect-timeout-ms", 700)
        assert rc == 1 and "ERROR SMTPC_ETIMEDOUT" in out, out
    finally:
        for c in fill:
            c.close()
        lsock.close()
