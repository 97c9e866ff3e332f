"""A scripted proxy (SOCKS4/4a, SOCKS5, HTTP CONNECT) for smtpc's proxy tests.

Well-behaved ("forward") it really connects to the requested target and
relays bytes both ways; hostile modes answer what a broken or unfriendly
proxy would::

    from servers.scripted_proxy import scripted_proxy, echo_target  # noqa: F401

    def test_x(scripted_proxy, echo_target):
        tgt = echo_target()                          # greets "220 target ready", echoes lines
        px = scripted_proxy("socks5", "forward", auth=("u", "p"))
        ... connect through f"socks5h://u:p@127.0.0.1:{px.port}" to tgt.port ...
        assert px.requests[0]["host"] == "localhost"

proto: "socks4" (4 and 4a), "socks5", "http".
modes (all protocols unless noted):
  forward            behave; with auth=(user, pass) require those credentials
                     (SOCKS5 method 0x02 / HTTP Proxy-Authorization: Basic);
                     coalesce=True sends the success reply and the target's
                     greeting in one segment
  close              accept, read nothing, close
  silent             read the request, never answer (until the client closes)
  garbage            answer bytes that are no valid reply
  truncate:N         send the first N bytes of a valid success reply, close
  slow:S             forward, but send the success reply one byte every S seconds
  socks5 only:
    rep:N            CONNECT reply code N (after a normal method selection)
    method:N         choose authentication method N (0xff = none acceptable)
    auth_fail        choose user/pass and reject the credentials (status 1)
    close_after_method  answer the method selection, then close
    bad_atyp         success reply with address type 0x07
  socks4 only:
    cd:N             reply code N (0x5b, 0x5c, 0x5d, ...)
  http only:
    status:LINE      answer "HTTP/1.1 LINE" (bytes; e.g. b"407 Proxy Auth...")
                     plus extra_headers (bytes)
    endless_header   "HTTP/1.1 200 OK" then header lines forever
    close_mid_header "HTTP/1.1 200 OK\\r\\nX-A: b\\r\\n" then close

Recorded: px.requests (one dict per connection: "proto", "host", "port",
"atyp", "user", "password", "raw" request bytes), px.received (all bytes
received from clients), px.errors.
"""
import base64
import select
import socket
import struct
import threading
import time

import pytest


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return buf


class ScriptedProxy:
    def __init__(self, proto, mode="forward", auth=None, family=socket.AF_INET, coalesce=False,
                 extra_headers=b""):
        self.proto = proto
        self.mode = mode
        self.auth = auth
        self.coalesce = coalesce
        self.extra_headers = extra_headers
        self.requests = []
        self.received = b""
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = []
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # ---- plumbing ----
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            with self._lock:
                self._socks.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _rec(self, data):
        with self._lock:
            self.received += data

    def _recv_exact(self, c, n):
        d = _recv_exact(c, n)
        self._rec(d)
        return d

    def _recv_until_nul(self, c):
        out = b""
        while True:
            b = self._recv_exact(c, 1)
            if b == b"\0":
                return out
            out += b

    def _serve(self, c):
        req = {"proto": self.proto}
        with self._lock:
            self.requests.append(req)
        try:
            if self.mode == "close":
                return
            getattr(self, "_serve_" + self.proto)(c, req)
        except EOFError:
            pass
        except Exception as e:  # recorded for the test to see
            with self._lock:
                self.errors.append(repr(e))
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _hold(self, c):
        """Answer nothing; return when the client closes or we stop."""
        while not self._stop.is_set():
            r, _, _ = select.select([c], [], [], 0.1)
            if r:
                try:
                    d = c.recv(4096)
                except OSError:
                    return
                if not d:
                    return
                self._rec(d)

    def _connect_target(self, host, port):
        return socket.create_connection((host, port), timeout=5)

    def _relay(self, c, t):
        socks = [c, t]
        while not self._stop.is_set():
            r, _, _ = select.select(socks, [], [], 0.1)
            for s in r:
                try:
                    d = s.recv(65536)
                except OSError:
                    d = b""
                if not d:
                    t.close()
                    return
                (t if s is c else c).sendall(d)

    # ---- SOCKS4 / 4a ----
    def _serve_socks4(self, c, req):
        head = self._recv_exact(c, 8)
        vn, cd, port = struct.unpack("!BBH", head[:4])
        ip = head[4:8]
        user = self._recv_until_nul(c)
        req.update(version=vn, cmd=cd, port=port, user=user.decode("latin-1"))
        if ip[:3] == b"\0\0\0" and ip[3] != 0:
            req["host"] = self._recv_until_nul(c).decode("latin-1")
            req["atyp"] = "4a"
        else:
            req["host"] = socket.inet_ntoa(ip)
            req["atyp"] = "ipv4"
        ok = struct.pack("!BBH4s", 0, 0x5A, 0, b"\0\0\0\0")
        m = self.mode
        if m == "silent":
            return self._hold(c)
        if m == "garbage":
            return c.sendall(b"\x04garbage-reply\r\n")
        if m.startswith("truncate:"):
            return c.sendall(ok[: int(m.split(":")[1])])
        if m.startswith("cd:"):
            return c.sendall(struct.pack("!BBH4s", 0, int(m.split(":")[1], 0), 0, b"\0" * 4))
        t = self._connect_target(req["host"], port)
        self._send_ok(c, t, ok)
        self._relay(c, t)

    # ---- SOCKS5 ----
    def _serve_socks5(self, c, req):
        ver, n = struct.unpack("!BB", self._recv_exact(c, 2))
        methods = list(self._recv_exact(c, n))
        req.update(version=ver, methods=methods)
        m = self.mode
        if m == "silent":
            return self._hold(c)
        if m == "garbage":
            return c.sendall(b"\x00\x00garbage")
        if m.startswith("method:"):
            return c.sendall(bytes([5, int(m.split(":")[1], 0)]))
        if m == "close_after_method":
            c.sendall(b"\x05\x00")
            return
        if m == "auth_fail" or (self.auth and (m == "forward" or m.startswith("slow:"))):
            if 2 not in methods:
                return c.sendall(b"\x05\xff")
            c.sendall(b"\x05\x02")
            v, ul = struct.unpack("!BB", self._recv_exact(c, 2))
            user = self._recv_exact(c, ul)
            (pl,) = struct.unpack("!B", self._recv_exact(c, 1))
            pw = self._recv_exact(c, pl)
            req.update(user=user.decode("latin-1"), password=pw.decode("latin-1"))
            if m == "auth_fail" or (user.decode("latin-1"), pw.decode("latin-1")) != tuple(self.auth):
                return c.sendall(b"\x01\x01")
            c.sendall(b"\x01\x00")
        else:
            c.sendall(b"\x05\x00")
        ver, cmd, _rsv, atyp = struct.unpack("!BBBB", self._recv_exact(c, 4))
        if atyp == 1:
            host = socket.inet_ntoa(self._recv_exact(c, 4))
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, self._recv_exact(c, 16))
        elif atyp == 3:
            (ln,) = struct.unpack("!B", self._recv_exact(c, 1))
            host = self._recv_exact(c, ln).decode("latin-1")
        else:
            raise ValueError(f"atyp {atyp}")
        (port,) = struct.unpack("!H", self._recv_exact(c, 2))
        req.update(cmd=cmd, atyp={1: "ipv4", 3: "domain", 4: "ipv6"}[atyp], host=host, port=port)
        ok = b"\x05\x00\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", 4242)
        if m.startswith("rep:"):
            return c.sendall(b"\x05" + bytes([int(m.split(":")[1], 0)]) + ok[2:])
        if m.startswith("truncate:"):
            return c.sendall(ok[: int(m.split(":")[1])])
        if m == "bad_atyp":
            return c.sendall(b"\x05\x00\x00\x07\x01\x02\x03\x04\x00\x01")
        try:
            t = self._connect_target(host, port)
        except OSError:
            return c.sendall(b"\x05\x05" + ok[2:])  # connection refused
        self._send_ok(c, t, ok)
        self._relay(c, t)

    def _send_ok(self, c, t, ok):
        if self.mode.startswith("slow:"):  # one byte at a time
            for i in range(len(ok)):
                c.sendall(ok[i:i + 1])
                time.sleep(float(self.mode.split(":")[1]))
        elif self.coalesce:
            t.settimeout(5)
            c.sendall(ok + t.recv(4096))  # one segment: the reply and the greeting
        else:
            c.sendall(ok)

    # ---- HTTP CONNECT ----
    def _serve_http(self, c, req):
        raw = b""
        while b"\r\n\r\n" not in raw:
            d = c.recv(4096)
            if not d:
                raise EOFError("EOF in request")
            self._rec(d)
            raw += d
            if len(raw) > 65536:
                raise ValueError("request too long")
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        req.update(method=method, version=version, host=host, port=int(port), headers=headers,
                   raw=raw)
        pa = headers.get("proxy-authorization")
        if pa:
            scheme, _, b64 = pa.partition(" ")
            user, _, pw = base64.b64decode(b64).decode("latin-1").partition(":")
            req.update(auth_scheme=scheme, user=user, password=pw)
        m = self.mode
        if m == "silent":
            return self._hold(c)
        if m == "garbage":
            return c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        if m.startswith("truncate:"):
            return c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n"[: int(m.split(":")[1])])
        if m.startswith("status:"):
            line = m.split(":", 1)[1].encode("latin-1")
            return c.sendall(b"HTTP/1.1 " + line + b"\r\n" + self.extra_headers +
                             b"Content-Length: 0\r\n\r\n")
        if m == "endless_header":
            c.sendall(b"HTTP/1.1 200 OK\r\n")
            try:
                while not self._stop.is_set():
                    c.sendall(b"X-Filler: " + b"y" * 100 + b"\r\n")
            except OSError:
                pass
            return
        if m == "close_mid_header":
            return c.sendall(b"HTTP/1.1 200 OK\r\nX-A: b\r\n")
        if self.auth:
            if not pa or (req.get("user"), req.get("password")) != tuple(self.auth):
                return c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic realm=\"smtpc-test\"\r\n"
                                 b"Content-Length: 0\r\n\r\n")
        try:
            t = self._connect_target(host, int(port))
        except OSError:
            return c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        self._send_ok(c, t, b"HTTP/1.1 200 Connection established\r\nProxy-Agent: scripted\r\n\r\n")
        self._relay(c, t)

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class EchoTarget:
    """A tiny TCP server: greets with "220 target ready", echoes every line."""

    def __init__(self, family=socket.AF_INET, greeting=b"220 target ready\r\n"):
        self.greeting = greeting
        self.connections = 0
        self._stop = threading.Event()
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.sendall(self.greeting)
            c.settimeout(10)
            buf = b""
            while True:
                d = c.recv(4096)
                if not d:
                    return
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    c.sendall(line + b"\n")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        self.lsock.close()


@pytest.fixture
def scripted_proxy():
    made = []

    def make(*a, **kw):
        p = ScriptedProxy(*a, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def echo_target():
    made = []

    def make(*a, **kw):
        t = EchoTarget(*a, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def has_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False

