"""The client through a real SOCKS5 proxy (smtpc_client_set_proxy_url is passed to
the session): the message arrives, and the proxy carried the connection."""
import time

from client_servers import counting, run, lines, kv  # noqa: F401
from servers.proxies import socks5_auth_proxy, socks5_proxy  # noqa: F401


def _send(srv, proxy_url, n=2):
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--proxy", proxy_url, "--n", str(n)])
    assert p.returncode == 0, p.stdout + p.stderr
    sends = lines(p, "send")
    assert len(sends) == n
    assert all(kv(l)["rc"] == "SMTPC_OK" for l in sends), p.stdout
    return p


def test_client_sends_through_socks5(counting, socks5_proxy):
    srv = counting()
    _send(srv, socks5_proxy.url)
    time.sleep(0.3)
    assert len(srv.msgids) == 2
    # The server saw the proxy's connection, one for both messages.
    assert srv.connections == 1


def test_client_sends_through_socks5_with_auth(counting, socks5_auth_proxy):
    srv = counting()
    p = _send(srv, socks5_auth_proxy.url, n=1)
    assert len(srv.msgids) == 1
    assert socks5_auth_proxy.password not in p.stdout + p.stderr
