"""Connecting through SOCKS4/4a/5 and HTTP CONNECT proxies (src/net/proxy.c).

drv_proxy connects through a proxy URL to a target and prints the target's
greeting and an echoed line, or "ERROR <NAME>: <message>". The scripted proxy
(servers/scripted_proxy.py) plays both a well-behaved proxy that really
forwards and every hostile case we name in the error messages.
"""
import os
import socket
import subprocess

import pytest

from conftest import driver
from servers.certs import certs  # noqa: F401
from servers.scripted_proxy import echo_target, has_ipv6, scripted_proxy  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401

SECRET = "s3cr3t-Pa55"


def run(url, host, port, timeout_ms=10000, cancel_ms=0):
    args = [driver("proxy"), url, host, str(port), str(timeout_ms)]
    if cancel_ms:
        args.append(str(cancel_ms))
    r = subprocess.run(args, capture_output=True, timeout=60)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    assert SECRET not in out, out  # the password never shows, whatever happened
    return r.returncode, out


def ok(out):
    assert "GREETING: 220 target ready\n" in out, out
    assert "ECHO: PING through proxy\n" in out, out


def elapsed_ms(out):
    for line in out.splitlines():
        if line.startswith("ELAPSED_MS: "):
            return int(line.split()[1])
    raise AssertionError(out)


# ---- well-behaved proxies ----------------------------------------------------

@pytest.mark.parametrize("scheme,proto,host,atyp", [
    ("socks5h", "socks5", "localhost", "domain"),
    ("socks5", "socks5", "localhost", "ipv4"),          # resolved by us
    ("socks5h", "socks5", "127.0.0.1", "ipv4"),         # literal sent as an address
    ("socks4", "socks4", "localhost", "ipv4"),
    ("socks4a", "socks4", "localhost", "4a"),
    ("http", "http", "localhost", None),
])
def test_forward(scripted_proxy, echo_target, scheme, proto, host, atyp):
    tgt = echo_target()
    px = scripted_proxy(proto, "forward")
    rc, out = run(f"{scheme}://127.0.0.1:{px.port}", host, tgt.port)
    assert rc == 0, out
    ok(out)
    req = px.requests[0]
    assert req["port"] == tgt.port
    if atyp:
        assert req["atyp"] == atyp
    if atyp == "domain" or atyp == "4a" or proto == "http":
        assert req["host"] == host
    else:
        assert req["host"] == "127.0.0.1"
    assert px.errors == []


def test_socks5_userpass(scripted_proxy, echo_target):
    tgt = echo_target()
    px = scripted_proxy("socks5", "forward", auth=("us@r", SECRET))
    rc, out = run(f"socks5h://us%40r:{SECRET}@127.0.0.1:{px.port}", "localhost", tgt.port)
    assert rc == 0, out
    ok(out)
    assert px.requests[0]["methods"] == [0, 2]
    assert px.requests[0]["user"] == "us@r"
    assert px.requests[0]["password"] == SECRET


def test_socks5_wrong_password(scripted_proxy, echo_target):
    tgt = echo_target()
    px = scripted_proxy("socks5", "forward", auth=("u", "other"))
    rc, out = run(f"socks5h://u:{SECRET}@127.0.0.1:{px.port}", "localhost", tgt.port)
    assert rc == 1
    assert f"ERROR SMTPC_EPROXY: SOCKS5 proxy socks5h://u:***@127.0.0.1:{px.port}: " \
           "authentication failed: the proxy rejected the user name or password" in out


def test_socks4_userid(scripted_proxy, echo_target):
    tgt = echo_target()
    px = scripted_proxy("socks4", "forward")
    rc, out = run(f"socks4a://ident@127.0.0.1:{px.port}", "localhost", tgt.port)
    assert rc == 0, out
    assert px.requests[0]["user"] == "ident"


def test_http_basic_auth(scripted_proxy, echo_target):
    tgt = echo_target()
    px = scripted_proxy("http", "forward", auth=("me", SECRET))
    rc, out = run(f"http://me:{SECRET}@127.0.0.1:{px.port}", "localhost", tgt.port)
    assert rc == 0, out
    ok(out)
    req = px.requests[0]
    assert req["auth_scheme"] == "Basic" and req["user"] == "me" and req["password"] == SECRET
    assert req["raw"].startswith(f"CONNECT localhost:{tgt.port} HTTP/1.1\r\n"
                                 f"Host: localhost:{tgt.port}\r\n".encode())


@pytest.mark.parametrize("scheme,proto", [("http", "http"), ("socks5h", "socks5"),
                                          ("socks4a", "socks4")])
def test_greeting_in_same_segment_is_not_lost(scripted_proxy, echo_target, scheme, proto):
    tgt = echo_target()
    px = scripted_proxy(proto, "forward", coalesce=True)
    rc, out = run(f"{scheme}://127.0.0.1:{px.port}", "localhost", tgt.port)
    assert rc == 0, out
    ok(out)


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("scheme,proto", [("socks5h", "socks5"), ("socks5", "socks5"),
                                          ("http", "http")])
def test_ipv6_proxy_and_target(scripted_proxy, echo_target, scheme, proto):
    tgt = echo_target(family=socket.AF_INET6)
    px = scripted_proxy(proto, "forward", family=socket.AF_INET6)
    rc, out = run(f"{scheme}://[::1]:{px.port}", "::1", tgt.port)
    assert rc == 0, out
    ok(out)
    assert px.requests[0]["host"] == "::1"
    if proto == "socks5":
        assert px.requests[0]["atyp"] == "ipv6"
    else:
        assert px.requests[0]["raw"].startswith(f"CONNECT [::1]:{tgt.port} HTTP/1.1".encode())


# ---- failures, each named ------------------------------------------------------

S5_CODES = {
    1: "general SOCKS server failure (reply 0x01)",
    2: "connection not allowed by ruleset (reply 0x02)",
    3: "network unreachable (reply 0x03)",
    4: "host unreachable (reply 0x04)",
    5: "connection refused (reply 0x05)",
    6: "TTL expired (reply 0x06)",
    7: "command not supported (reply 0x07)",
    8: "address type not supported (reply 0x08)",
    9: "unassigned reply code 0x09",
    0xff: "unassigned reply code 0xff",
}


@pytest.mark.parametrize("code", sorted(S5_CODES))
def test_socks5_reply_codes(scripted_proxy, code):
    px = scripted_proxy("socks5", f"rep:{code}")
    rc, out = run(f"socks5h://u:{SECRET}@127.0.0.1:{px.port}", "mx.example", 25)
    assert rc == 1
    assert f"ERROR SMTPC_EPROXY: SOCKS5 proxy socks5h://u:***@127.0.0.1:{px.port}: " in out
    assert f"CONNECT to mx.example:25 failed: {S5_CODES[code]}" in out, out


HOSTILE = [
    # proto, mode, url scheme (+userinfo), expected text
    ("socks5", "method:0xff", "socks5h", "authentication required: the proxy accepted none of "
     "the offered methods (no authentication)"),
    ("socks5", "method:0xff", f"socks5h://u:{SECRET}@", "accepted none of the offered "
     "authentication methods (no authentication, username/password)"),
    ("socks5", "method:2", "socks5h", "authentication required: the proxy chose "
     "username/password"),
    ("socks5", "auth_fail", f"socks5h://u:{SECRET}@", "authentication failed"),
    ("socks5", "garbage", "socks5h", "malformed SOCKS5 reply (version byte 0x00, expected 0x05)"),
    ("socks5", "bad_atyp", "socks5h", "malformed SOCKS5 reply (unknown address type 0x07)"),
    ("socks5", "close", "socks5h", "the proxy closed the connection instead of sending the "
     "SOCKS5 method selection"),
    ("socks5", "close_after_method", "socks5h", "the proxy closed the connection instead of "
     "sending the SOCKS5 CONNECT reply"),
    ("socks5", "truncate:1", "socks5h", "in the middle of the SOCKS5 CONNECT reply (1 of 2 "
     "bytes received)"),
    ("socks5", "truncate:7", "socks5h", "in the middle of the SOCKS5 CONNECT reply (7 of 10 "
     "bytes received)"),
    ("socks4", "cd:0x5b", "socks4a", "CONNECT to mx.example:25 refused: request rejected or "
     "failed (reply 0x5b)"),
    ("socks4", "cd:0x5c", "socks4a", "cannot reach our identd (reply 0x5c)"),
    ("socks4", "cd:0x5d", "socks4a", "identd reports a different user id (reply 0x5d)"),
    ("socks4", "garbage", "socks4a", "malformed SOCKS4 reply (version byte 0x04"),
    ("socks4", "truncate:3", "socks4a", "in the middle of the SOCKS4 reply (3 of 8 bytes"),
    ("http", "status:407 Proxy Authentication Required", "http",
     "proxy authentication required (407 Proxy Authentication Required): no credentials "
     "configured"),
    ("http", "status:407 Proxy Authentication Required", f"http://u:{SECRET}@",
     "proxy authentication required (407 Proxy Authentication Required): the credentials were "
     "rejected"),
    ("http", "status:403 Forbidden", "http", "CONNECT to mx.example:25 forbidden by the proxy "
     "(403 Forbidden)"),
    ("http", "status:502 Bad\x1b[2J Gateway\x07", "http",
     "the proxy could not reach mx.example:25 (502 Bad\\x1b[2J Gateway\\x07)"),
    ("http", "status:418 I'm a teapot", "http", "refused: the proxy answered 418 I'm a teapot"),
    ("http", "garbage", "http", "malformed HTTP response status line \"SSH-2.0-OpenSSH_9.2\""),
    ("http", "endless_header", "http", "the HTTP response header is longer than 16384 bytes"),
    ("http", "close_mid_header", "http", "the proxy closed the connection in the middle of the "
     "HTTP response header"),
    ("http", "close", "http", "the proxy closed the connection instead of sending the HTTP "
     "response header"),
    ("http", "truncate:20", "http", "in the middle of the HTTP response header (20 bytes"),
]


@pytest.mark.parametrize("proto,mode,scheme,expect", HOSTILE,
                         ids=[f"{h[0]}-{h[1][:20]}-{'auth' if SECRET in h[2] else 'noauth'}"
                              for h in HOSTILE])
def test_hostile(scripted_proxy, proto, mode, scheme, expect):
    px = scripted_proxy(proto, mode)
    url = f"{scheme}127.0.0.1:{px.port}" if "://" in scheme else f"{scheme}://127.0.0.1:{px.port}"
    rc, out = run(url, "mx.example", 25)
    assert rc == 1, out
    assert "ERROR SMTPC_EPROXY: " in out, out
    assert expect in out, out
    assert "\x1b" not in out and "\x07" not in out


def test_http_407_names_the_challenge(scripted_proxy):
    px = scripted_proxy("http", "status:407 Proxy Authentication Required",
                        extra_headers=b"Proxy-Authenticate: Basic realm=\"corp\x1b\"\r\n")
    rc, out = run(f"http://127.0.0.1:{px.port}", "mx.example", 25)
    assert rc == 1
    assert "the proxy asks for: Basic realm=\"corp\\x1b\"" in out, out


@pytest.mark.parametrize("proto,scheme", [("socks5", "socks5h"), ("socks4", "socks4a"),
                                          ("http", "http")])
def test_silent_proxy_times_out(scripted_proxy, proto, scheme):
    px = scripted_proxy(proto, "silent")
    rc, out = run(f"{scheme}://127.0.0.1:{px.port}", "mx.example", 25, timeout_ms=700)
    assert rc == 1
    assert f"ERROR SMTPC_ETIMEDOUT: proxy {scheme}://127.0.0.1:{px.port}: the proxy did not " \
           "complete the handshake in time" in out, out
    ms = elapsed_ms(out)
    assert 600 <= ms < 5000, out


@pytest.mark.parametrize("scheme,proto", [("socks5h", "socks5"), ("socks4a", "socks4"),
                                          ("http", "http")])
def test_slow_proxy(scripted_proxy, echo_target, scheme, proto):
    """A reply dribbling in byte by byte: done within the deadline, else a timeout."""
    tgt = echo_target()
    px = scripted_proxy(proto, "slow:0.02")
    rc, out = run(f"{scheme}://127.0.0.1:{px.port}", "localhost", tgt.port)
    assert rc == 0, out
    ok(out)
    px = scripted_proxy(proto, "slow:0.3")
    rc, out = run(f"{scheme}://127.0.0.1:{px.port}", "localhost", tgt.port, timeout_ms=800)
    assert rc == 1
    assert "ERROR SMTPC_ETIMEDOUT: " in out and "did not complete the handshake in time" in out
    assert elapsed_ms(out) < 5000, out


def test_cancel_during_handshake(scripted_proxy):
    px = scripted_proxy("socks5", "silent")
    rc, out = run(f"socks5h://127.0.0.1:{px.port}", "mx.example", 25, timeout_ms=30000,
                  cancel_ms=300)
    assert rc == 1
    assert "ERROR SMTPC_ECANCELED: proxy socks5h://127.0.0.1:" in out, out
    assert elapsed_ms(out) < 10000


def test_proxy_refuses_tcp():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rc, out = run(f"socks5h://u:{SECRET}@127.0.0.1:{port}", "mx.example", 25)
    assert rc == 1
    assert f"ERROR SMTPC_ENETWORK: proxy socks5h://u:***@127.0.0.1:{port}: connect to " \
           f"127.0.0.1:{port}" in out, out


def test_target_unreachable_through_forwarding_proxy(scripted_proxy):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    px = scripted_proxy("socks5", "forward")
    rc, out = run(f"socks5h://127.0.0.1:{px.port}", "127.0.0.1", port)
    assert rc == 1
    assert f"CONNECT to 127.0.0.1:{port} failed: connection refused (reply 0x05)" in out, out
    px = scripted_proxy("http", "forward")
    rc, out = run(f"http://127.0.0.1:{px.port}", "127.0.0.1", port)
    assert rc == 1
    assert f"the proxy could not reach 127.0.0.1:{port} (502 Bad Gateway)" in out, out


@pytest.mark.parametrize("url,expect", [
    (f"socks5h://u:{SECRET}@127.0.0.1:0", "proxy URL: invalid port"),
    ("gopher://127.0.0.1", "proxy URL: unknown scheme"),
    (f"socks4://u:{SECRET}@127.0.0.1", "proxy URL: SOCKS4 carries a user id but no password"),
    (f"http://u:{SECRET}/x@127.0.0.1", "proxy URL: a path, query or fragment is not allowed"),
])
def test_bad_urls(url, expect):
    rc, out = run(url, "mx.example", 25)
    assert rc == 1
    assert f"ERROR SMTPC_EINVAL: {expect}" in out, out


# ---- https:// proxies: CONNECT inside TLS to the proxy (stunnel in front) ----

def run_env(url, host, port, env_extra, timeout_ms=10000):
    env = dict(os.environ, **env_extra)
    r = subprocess.run([driver("proxy"), url, host, str(port), str(timeout_ms)],
                       capture_output=True, timeout=60, env=env)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    assert SECRET not in out, out
    return r.returncode, out


@pytest.mark.parametrize("coalesce", [False, True])
def test_https_proxy(scripted_proxy, echo_target, stunnel_in_front_of, coalesce):
    tgt = echo_target()
    px = scripted_proxy("http", "forward", auth=("me", SECRET), coalesce=coalesce)
    tls = stunnel_in_front_of(px.port)
    rc, out = run_env(f"https://me:{SECRET}@localhost:{tls.port}", "localhost", tgt.port,
                      {"SMTPC_TEST_PROXY_CA": tls.ca_file})
    assert rc == 0, out
    ok(out)
    assert px.requests[0]["password"] == SECRET


def test_https_proxy_407(scripted_proxy, stunnel_in_front_of):
    px = scripted_proxy("http", "status:407 Proxy Authentication Required")
    tls = stunnel_in_front_of(px.port)
    rc, out = run_env(f"https://me:{SECRET}@127.0.0.1:{tls.port}", "mx.example", 25,
                      {"SMTPC_TEST_PROXY_CA": tls.ca_file})
    assert rc == 1
    assert f"ERROR SMTPC_EPROXY: HTTPS proxy https://me:***@127.0.0.1:{tls.port}: proxy " \
           "authentication required (407 Proxy Authentication Required): the credentials " \
           "were rejected" in out, out


@pytest.mark.parametrize("cert,ca", [("wrong_host", "test"), ("server", "system")])
def test_https_proxy_unverified(scripted_proxy, stunnel_in_front_of, cert, ca):
    px = scripted_proxy("http", "forward")
    tls = stunnel_in_front_of(px.port, cert=cert)
    rc, out = run_env(f"https://me:{SECRET}@localhost:{tls.port}", "mx.example", 25,
                      {"SMTPC_TEST_PROXY_CA": tls.ca_file if ca == "test" else ""})
    assert rc == 1
    assert f"ERROR SMTPC_ETLS: proxy https://me:***@localhost:{tls.port}: TLS to the proxy: " \
        in out, out
    assert px.requests == []  # no CONNECT (nor credentials) went to an unverified proxy


def test_socks4_local_resolution_failure():
    rc, out = run("socks4://127.0.0.1:1", "no-such-host.invalid", 25)
    assert rc == 1
    assert "ERROR SMTPC_ENOHOST: cannot resolve no-such-host.invalid" in out, out
    assert "socks4a://" in out
