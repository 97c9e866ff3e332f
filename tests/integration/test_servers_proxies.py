"""Self-tests of the proxy fixtures (servers/proxies.py): raw SOCKS5 / HTTP CONNECT
handshakes in Python, then smtplib over the tunnel to the private Postfix."""
import base64
import ipaddress
import smtplib
import socket
import struct
import subprocess

import pytest

from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.proxies import (http_auth_proxy, http_proxy, microsocks_auth_proxy,  # noqa: F401
                             microsocks_proxy, proxy_factory, socks5_auth_proxy, socks5_proxy,
                             start_tinyproxy)

MSG = b"Subject: via proxy\r\n\r\nhello\r\n"


class SocksError(Exception):
    pass


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SocksError("proxy closed the connection")
        b += c
    return b


def socks5_connect(proxy, host, port, username=None, password=None, offer=None):
    """RFC 1928/1929 client: returns a socket tunnelled to host:port."""
    s = socket.create_connection((proxy.host, proxy.port), timeout=30)  # host may be ::1
    try:
        methods = offer if offer is not None else ([2] if username is not None else [0])
        s.sendall(bytes([5, len(methods), *methods]))
        ver, method = recv_exact(s, 2)
        if ver != 5 or method == 0xFF:
            raise SocksError(f"no acceptable method (ver {ver}, method {method})")
        if method == 2:
            u, p = username.encode(), password.encode()
            s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
            _, status = recv_exact(s, 2)
            if status != 0:
                raise SocksError(f"auth failed ({status})")
        try:
            ip = ipaddress.ip_address(host)
            addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
        except ValueError:
            addr = b"\x03" + bytes([len(host)]) + host.encode()
        s.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
        ver, rep, _, atyp = recv_exact(s, 4)
        if rep != 0:
            raise SocksError(f"CONNECT refused ({rep})")
        recv_exact(s, {1: 4, 4: 16}.get(atyp) or recv_exact(s, 1)[0])
        recv_exact(s, 2)
        return s
    except BaseException:
        s.close()
        raise


def http_connect(proxy, host, port, username=None, password=None):
    """HTTP CONNECT; returns (status, socket or None)."""
    s = socket.create_connection((proxy.host, proxy.port), timeout=30)  # host may be ::1
    hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    req = f"CONNECT {hp} HTTP/1.1\r\nHost: {hp}\r\n"
    if username is not None:
        req += "Proxy-Authorization: Basic " + \
            base64.b64encode(f"{username}:{password}".encode()).decode() + "\r\n"
    s.sendall((req + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            break
        head += c
    status = int(head.split(b" ", 2)[1]) if head else 0
    if status != 200:
        s.close()
        return status, None
    return status, s


class SMTPOverSocket(smtplib.SMTP):
    """smtplib on an already connected (tunnelled) socket."""

    def __init__(self, sock):
        self._tunnel = sock
        super().__init__()
        self.sock = sock
        self.file = None
        code, msg = self.getreply()
        assert code == 220, msg


def send_through(sock, postfix, rcpt):
    with SMTPOverSocket(sock) as s:
        s.ehlo()
        s.sendmail("a@example.org", [rcpt], MSG)
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == rcpt
    assert m.original_crlf == MSG


@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "localhost"])
def test_dante_noauth(socks5_proxy, postfix, target):
    send_through(socks5_connect(socks5_proxy, target, postfix.port), postfix, "dante@example.org")


def test_dante_auth(socks5_auth_proxy, postfix):
    p = socks5_auth_proxy
    assert p.username and p.password
    send_through(socks5_connect(p, "127.0.0.1", postfix.port, p.username, p.password), postfix,
                 "dante-auth@example.org")


def test_dante_auth_refuses_wrong_password_and_noauth(socks5_auth_proxy, postfix):
    p = socks5_auth_proxy
    with pytest.raises(SocksError, match="auth failed"):
        socks5_connect(p, "127.0.0.1", postfix.port, p.username, "wrong")
    with pytest.raises(SocksError, match="no acceptable method"):
        socks5_connect(p, "127.0.0.1", postfix.port)


def test_dante_refuses_closed_port(socks5_proxy):
    from servers.util import free_port
    with pytest.raises(SocksError, match=r"CONNECT refused \(5\)"):  # 05: connection refused
        socks5_connect(socks5_proxy, "127.0.0.1", free_port())


@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "localhost"])
def test_microsocks_noauth(microsocks_proxy, postfix, target):
    send_through(socks5_connect(microsocks_proxy, target, postfix.port), postfix, "micro@example.org")


def test_microsocks_auth(microsocks_auth_proxy, postfix):
    p = microsocks_auth_proxy
    send_through(socks5_connect(p, "127.0.0.1", postfix.port, p.username, p.password), postfix,
                 "micro-auth@example.org")
    with pytest.raises(SocksError):
        socks5_connect(p, "127.0.0.1", postfix.port, p.username, "wrong")
    with pytest.raises(SocksError, match="no acceptable method"):
        socks5_connect(p, "127.0.0.1", postfix.port)


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
def test_tinyproxy_connect(http_proxy, postfix, target):
    status, s = http_connect(http_proxy, target, postfix.port)
    assert status == 200
    send_through(s, postfix, "http@example.org")


def test_tinyproxy_basic_auth(http_auth_proxy, postfix):
    p = http_auth_proxy
    assert http_connect(p, "127.0.0.1", postfix.port)[0] == 407
    # tinyproxy 1.11 quirk: wrong credentials get 401, not 407
    assert http_connect(p, "127.0.0.1", postfix.port, p.username, "wrong")[0] == 401
    status, s = http_connect(p, "127.0.0.1", postfix.port, p.username, p.password)
    assert status == 200
    send_through(s, postfix, "http-auth@example.org")


def test_tinyproxy_connect_ports(proxy_factory, postfix):
    p = proxy_factory(start_tinyproxy, connect_ports=[postfix.submission_port])
    assert http_connect(p, "127.0.0.1", postfix.port)[0] == 403
    status, s = http_connect(p, "127.0.0.1", postfix.submission_port)
    assert status == 200
    s.close()


@pytest.mark.parametrize("which", ["socks5_proxy", "socks5_auth_proxy", "microsocks_auth_proxy",
                                   "http_proxy", "http_auth_proxy"])
def test_curl_through_proxies(request, postfix, tmp_path, which):
    p = request.getfixturevalue(which)
    f = tmp_path / "m.eml"
    f.write_bytes(MSG)
    args = ["curl", "-sS", f"smtp://127.0.0.1:{postfix.port}", "--mail-from", "a@example.org",
            "--mail-rcpt", "curl@example.org", "-T", str(f), "-x", p.url]
    if p.kind == "http":
        args.append("--proxytunnel")
    r = subprocess.run(args, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "curl@example.org"


@pytest.mark.parametrize("starter", ["dante", "microsocks", "tinyproxy"])
def test_ipv6_listeners(proxy_factory, postfix, starter):
    from servers import proxies
    fn = {"dante": proxies.start_dante, "microsocks": proxies.start_microsocks,
          "tinyproxy": proxies.start_tinyproxy}[starter]
    p = proxy_factory(fn, listen="::1")
    assert p.host == "::1"
    if p.kind == "http":
        status, s = http_connect(p, "::1", postfix.port)
        assert status == 200
    else:
        s = socks5_connect(p, "::1", postfix.port)
    send_through(s, postfix, f"{starter}6@example.org")
