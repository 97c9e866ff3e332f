"""stunnel (Debian stunnel4) in front of any plain TCP server: implicit TLS
(SMTPS-style) for servers that have none, with any certificate of the test PKI.

Usage in a test file::

    from servers.stunnel import stunnel_in_front_of  # noqa: F401

    def test_x(stunnel_in_front_of, aiosmtpd):
        tls = stunnel_in_front_of(aiosmtpd.port)              # good cert (certs.server)
        bad = stunnel_in_front_of(aiosmtpd.port, cert="expired")
        smtplib.SMTP_SSL(tls.host, tls.port, context=ssl.create_default_context(cafile=tls.ca_file))

``stunnel_in_front_of(port, host="127.0.0.1", cert="server", listen="127.0.0.1",
require_client_cert=False, min_tls=None, max_tls=None, ciphers=None,
extra=None) -> Tunnel`` is a function-scoped factory fixture: every tunnel it
made is stopped at the end of the test. ``Tunnel`` has ``.host`` (the listen
address), ``.port`` (the TLS port), ``.ca_file``, ``.cert`` (certs.Cert
presented), ``.stop()``. ``listen="::1"`` listens on IPv6. ``cert`` is a name
from servers/certs.py (server, server_rsa, expired, not_yet_valid, wrong_host,
self_signed, unknown_ca, wildcard, chain) or a certs.Cert. ``min_tls``/``max_tls``:
"TLSv1.2"/"TLSv1.3". ``require_client_cert=True``: the client must present a cert
issued by the test CA (certs.client). ``extra``: dict of further service options.

For session-wide tunnels use ``start_stunnel(certs, port, ...)`` (same arguments
plus the CertSet first) and call ``.stop()`` yourself.

Start-up: about 0.1 s per tunnel. stunnel runs in the foreground (a child of
the test process) and is TERMed, then KILLed, on stop.
"""
import os

import pytest

from .certs import process_certs
from .util import (free_port, make_tempdir, read_log, remove_tree, require, start_process,
                   stop_process, wait_for_port)

STUNNEL = "/usr/bin/stunnel4"


class Tunnel:
    def __init__(self, proc, host, port, ca_file, cert, dir, target):
        self.proc, self.host, self.port = proc, host, port
        self.ca_file, self.cert, self.dir, self.target = ca_file, cert, dir, target

    def log(self):
        return read_log(os.path.join(self.dir, "stunnel.log"), limit=1 << 20)

    def stop(self):
        stop_process(self.proc)
        remove_tree(self.dir)


def start_stunnel(certs, port, host="127.0.0.1", cert="server", listen="127.0.0.1",
                  require_client_cert=False, min_tls=None, max_tls=None, ciphers=None, extra=None):
    require(STUNNEL, "stunnel4")
    c = certs[cert] if isinstance(cert, str) else cert
    d = make_tempdir("stunnel")
    log = os.path.join(d, "stunnel.log")
    for _ in range(3):
        tls_port = free_port(listen)
        opts = {
            "accept": f"{listen}:{tls_port}",
            "connect": f"{host}:{port}",
            "cert": c.chain,
            "key": c.key,
        }
        if require_client_cert:
            opts.update({"CAfile": certs.ca_file, "verifyChain": "yes", "requireCert": "yes"})
        if min_tls:
            opts["sslVersionMin"] = min_tls
        if max_tls:
            opts["sslVersionMax"] = max_tls
        if ciphers:
            opts["ciphers"] = ciphers
        opts.update(extra or {})
        conf = os.path.join(d, "stunnel.conf")
        with open(conf, "w") as f:
            f.write("foreground = yes\npid =\nsyslog = no\n"
                    f"output = {log}\ndebug = 5\n\n[tls]\n")
            f.write("".join(f"{k} = {v}\n" for k, v in opts.items()))
        proc = start_process([STUNNEL, conf], log=log)
        try:
            wait_for_port(tls_port, listen, timeout=20, proc=proc, log=log, what="stunnel")
            return Tunnel(proc, listen, tls_port, certs.ca_file, c, d, (host, port))
        except RuntimeError:  # lost a race for the port: try another one
            stop_process(proc)
        except BaseException:
            stop_process(proc)
            remove_tree(d)
            raise
    msg = read_log(log)
    remove_tree(d)
    raise RuntimeError("stunnel did not start\n" + msg)


@pytest.fixture
def stunnel_in_front_of():
    made = []

    certs = process_certs()

    def factory(port, **kw):
        t = start_stunnel(certs, port, **kw)
        made.append(t)
        return t

    try:
        yield factory
    finally:
        for t in made:
            t.stop()
