"""Servers for the client tests: aiosmtpd that also counts connections and
QUITs, and can answer 451 to chosen messages, or close idle connections.

Not a pytest file (no test_ prefix); imported by test_client*.py.
"""
import asyncio
import re
import subprocess
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from servers.aiosmtpd_server import AiosmtpdServer, _Handler, free_port
from conftest import driver


class _CountingHandler(_Handler):
    async def handle_QUIT(self, server, session, envelope):
        with self.srv.lock:
            self.srv.quits += 1
        return "221 Bye"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.srv.lock:
            self.srv.mail_count += 1
            n = self.srv.mail_count
        if n in self.srv.mail_421_at:
            loop = asyncio.get_event_loop()
            loop.call_later(0.05, server.transport.close)
            return "421 4.3.2 shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or b""
        m = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", data)
        mid = m.group(1).decode() if m else None
        with self.srv.lock:
            self.srv.data_count += 1
            n = self.srv.data_count
            tf = self.srv.tempfail_data
            if tf and mid is not None and mid not in self.srv.seen_tempfail and tf(n, mid):
                self.srv.seen_tempfail.add(mid)
                return "451 4.3.0 try again later"
        r = await super().handle_DATA(server, session, envelope)
        with self.srv.lock:
            if mid is not None:
                self.srv.msgids.append(mid)
            if self.srv.close_after_each:
                # Close the connection shortly after the reply (the idle-close case).
                loop = asyncio.get_event_loop()
                loop.call_later(0.05, server.transport.close)
        return r


class CountingServer(AiosmtpdServer):
    """aiosmtpd with: connections (accepted), quits, msgids (Message-IDs
    delivered, in order), tempfail_data(n, msgid) -> True to answer 451 to
    the n-th DATA (once per Message-ID), close_after_each (close every
    connection right after a message), mail_421_at (MAIL ordinals answered
    421 and closed)."""

    def __init__(self, tempfail_data=None, close_after_each=False, mail_421_at=(), **kw):
        self.mail_count = 0
        self.mail_421_at = set(mail_421_at)
        self.connections = 0
        self.quits = 0
        self.msgids = []
        self.data_count = 0
        self.tempfail_data = tempfail_data
        self.seen_tempfail = set()
        self.close_after_each = close_after_each
        kw.setdefault("pipelining", True)
        kw.setdefault("data_reply", "250 2.0.0 Ok: queued as ABC123")
        # The base class sets every attribute its handler uses and starts a
        # plain controller; replace that with one that counts connections.
        super().__init__(**kw)
        self.controller.stop()
        self.port = free_port(self.host)
        srv = self

        class _C(Controller):
            def factory(self):
                with srv.lock:
                    srv.connections += 1
                return SMTP(self.handler, hostname=self.hostname, enable_SMTPUTF8=True, decode_data=False)

        self.controller = _C(_CountingHandler(self), hostname=self.host, port=self.port, ready_timeout=30)
        self.controller.start()
        # The controller's own readiness probe counts as a connection.
        with self.lock:
            self.connections = 0


@pytest.fixture
def counting():
    servers = []

    def start(**kw):
        s = CountingServer(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def run(args, timeout=120, check=True):
    p = subprocess.run([driver("client"), *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode not in (0, 1):
        raise AssertionError(f"drv_client {args} exited {p.returncode}: {p.stderr}")
    return p


def lines(p, prefix):
    return [l for l in p.stdout.splitlines() if l.startswith(prefix + " ")]


def kv(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)
