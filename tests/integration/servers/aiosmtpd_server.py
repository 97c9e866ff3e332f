"""A real SMTP server for integration tests: Debian's aiosmtpd, in a thread.

Fixture ``aiosmtpd`` is a factory::

    def test_x(aiosmtpd):
        srv = aiosmtpd(pipelining=True, refuse={"bad@example.org"})
        ... connect a client to ("127.0.0.1", srv.port) ...
        env = srv.envelopes[0]
        assert env.mail_from == "a@example.org"
        assert env.rcpt_tos == ["b@example.org"]
        assert env.data == b"Subject: x\\r\\n\\r\\nbody\\r\\n"   # un-dot-stuffed

Each accepted message is recorded as an ``Envelope``: mail_from, rcpt_tos
(accepted recipients only), mail_options, rcpt_options (one list per accepted
recipient) and data, the exact message bytes after un-dot-stuffing (CRLF line
ends as sent; the terminating ".\\r\\n" removed). ``srv.rcpt_attempts`` lists
every RCPT address tried, accepted or not; ``srv.ehlo_names`` every EHLO/HELO
name seen; ``srv.peers`` the client's (address, port, ...) of each EHLO/HELO.

Options:
  pipelining   advertise PIPELINING in the EHLO reply (aiosmtpd handles
               pipelined input but does not advertise it by itself);
  refuse       recipient addresses answered "550 5.1.1 <addr>: no such user";
  tempfail     recipient addresses answered "450 4.2.1 <addr>: try later";
  data_reply   a reply to use for the end of DATA instead of "250 OK" ...
  smtputf8     advertise SMTPUTF8 (default True);
  data_size_limit  the largest message accepted (aiosmtpd's default: 32 MiB).

Nothing is required of the client (no AUTH, no TLS). The server listens on a
free 127.0.0.1 port and is stopped when the test ends.
"""
import dataclasses
import socket
import threading

import pytest
from aiosmtpd.controller import Controller


@dataclasses.dataclass
class Envelope:
    mail_from: str
    rcpt_tos: list
    mail_options: list
    rcpt_options: list
    data: bytes


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, srv):
        self.srv = srv

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.srv.lock:
            self.srv.ehlo_names.append(hostname)
            self.srv.peers.append(session.peer)
        if self.srv.pipelining:
            # Insert before the last line ("250 HELP") so the reply stays well formed.
            responses = responses[:-1] + ["250-PIPELINING"] + responses[-1:]
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        with self.srv.lock:
            self.srv.ehlo_names.append(hostname)
            self.srv.peers.append(session.peer)
        return "250 {}".format(server.hostname)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.srv.lock:
            self.srv.rcpt_attempts.append(address)
        if address in self.srv.refuse:
            return "550 5.1.1 <{}>: no such user".format(address)
        if address in self.srv.tempfail:
            return "450 4.2.1 <{}>: try later".format(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(list(rcpt_options))
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        env = Envelope(envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_options),
                       [list(o) for o in envelope.rcpt_options], bytes(data))
        with self.srv.lock:
            self.srv.envelopes.append(env)
        return self.srv.data_reply


class AiosmtpdServer:
    def __init__(self, pipelining=False, refuse=(), tempfail=(), data_reply="250 2.0.0 OK queued as 1234",
                 smtputf8=True, host="127.0.0.1", data_size_limit=None):
        self.pipelining = pipelining
        self.refuse = set(refuse)
        self.tempfail = set(tempfail)
        self.data_reply = data_reply
        self.lock = threading.Lock()
        self.envelopes = []
        self.rcpt_attempts = []
        self.ehlo_names = []
        self.peers = []
        self.host = host
        self.port = free_port(host)
        more = {"data_size_limit": data_size_limit} if data_size_limit else {}
        self.controller = Controller(_Handler(self), hostname=host, port=self.port,
                                     enable_SMTPUTF8=smtputf8, decode_data=False,
                                     ready_timeout=30, **more)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture
def aiosmtpd():
    servers = []

    def start(**kw):
        s = AiosmtpdServer(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
