"""Resident memory of idle implicit-TLS connections in smtpc_bulk
(bench_bulk --idle K --tls against a TLS peer of this file's own).

Measured on Debian 12 / OpenSSL 3.0 (bench_bulk's TRIMMED figure, i.e. after
malloc_trim): about 25-27 KiB per idle TLS connection with the record
buffers released while idle (SSL_MODE_RELEASE_BUFFERS), about 36 KiB
without; plain connections about 2.4 KiB. The bound sits between the two."""
import asyncio
import re
import subprocess
import ssl
import threading

import pytest

from conftest import BUILD_DIR
from servers.aiosmtpd_server import free_port
from servers.certs import certs  # noqa: F401


def sanitized():
    cache = BUILD_DIR / "CMakeCache.txt"
    return cache.exists() and re.search(r"^SMTPC_SANITIZE:BOOL=(ON|1|TRUE)$", cache.read_text(),
                                        flags=re.M | re.I) is not None


class IdleTlsPeer:
    """Implicit TLS; greets, answers EHLO, QUIT with 221, anything else 250."""

    def __init__(self, cert, key):
        self.port = free_port("127.0.0.1")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    async def _handle(self, r, w):
        w.write(b"220 idle-peer ESMTP\r\n")
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                u = line[:4].upper()
                if u == b"EHLO":
                    w.write(b"250-idle-peer\r\n250 PIPELINING\r\n")
                elif u == b"QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    break
                else:
                    w.write(b"250 ok\r\n")
        except (ConnectionError, OSError):
            pass
        w.close()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(
            self._handle, "127.0.0.1", self.port, backlog=1024, ssl=self.ctx, ssl_handshake_timeout=300))
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        def close():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(30)


def test_bulk_idle_tls_connection_memory(certs):
    if sanitized():
        pytest.skip("resident memory under ASan says nothing about the real allocator")
    exe = BUILD_DIR / "bench_bulk"
    assert exe.exists(), exe
    peer = IdleTlsPeer(certs.server.cert, certs.server.key)

    def trimmed_kib(k):
        p = subprocess.run([str(exe), "--tls", "--idle", str(k), "127.0.0.1", str(peer.port)],
                           capture_output=True, timeout=300)
        out = p.stdout.decode()
        assert p.returncode == 0, out + p.stderr.decode()
        m = re.search(r"^TRIMMED (\d+) (\d+) (\d+) (\d+)$", out, flags=re.M)
        assert m, out
        return int(m.group(3))

    try:
        # one connection carries the TLS context (OpenSSL, the trust store):
        # the difference is what each further connection costs
        k = 400
        one, many = trimmed_kib(1), trimmed_kib(k)
    finally:
        peer.stop()
    per_conn_kib = (many - one) / (k - 1)
    assert 5 < per_conn_kib < 31, (one, many, per_conn_kib)
