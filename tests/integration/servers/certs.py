"""Throwaway test PKI made at test time with the ``openssl`` CLI.

Usage in a test file::

    from servers.certs import certs  # noqa: F401  (session-scoped fixture)

    def test_x(certs):
        ctx = ssl.create_default_context(cafile=certs.ca_file)
        srv = certs["server"]          # or certs.server
        srv.cert, srv.key, srv.pem     # paths: cert, key, cert+key in one file
        srv.chain                      # cert followed by its intermediates (== cert here)
        srv.pin_sha256                 # base64(SHA-256(SubjectPublicKeyInfo DER))
        srv.pin_sha256_hex

More certificates from the same CA: ``certs.issue(name, cn, ext_lines, directory)``
(``SERVER_EXT`` holds the usual server extensions; add a subjectAltName line).
(``_Maker(d).issue(ca_dict, ...)`` as used by test_tls.py keeps working.)

Outside pytest: ``make_certs(directory) -> CertSet``; inside a fixture of
your own without requesting ``certs``: ``process_certs()`` (the same set: one CA
per pytest process, made on first use, removed at exit).

What is made (EC P-256 keys unless said, SHA-256 signatures), all signed by the
test CA (``certs.ca_file``, also ``certs.ca`` with ``.cert/.key``) unless said:

=============== ===========================================================
name            what
=============== ===========================================================
server          good: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1,
                serverAuth, valid from yesterday for 10 years
server_rsa      the same with an RSA-2048 key
expired         same SANs, valid 2020-01-01 .. 2021-01-01
not_yet_valid   same SANs, valid from a year from now
wrong_host      SAN DNS:wrong.example.test only (CN the same)
self_signed     same SANs, self-signed (not issued by the CA)
unknown_ca      same SANs, issued by another CA (``certs.unknown_ca_file``)
wildcard        SAN DNS:*.example.test (CN the same)
chain           same SANs as server, issued by an intermediate CA;
                ``.chain`` = leaf + intermediate (``.cert`` = leaf alone)
client          client certificate: CN=client.smtpc.test,
                SAN email:client@example.org, clientAuth
=============== ===========================================================

Directory layout: ``certs.dir/<name>.crt|.key|.pem|-chain.crt``; the whole
directory is removed at the end of the session.
"""
import atexit
import base64
import concurrent.futures
import datetime
import hashlib
import os
import subprocess
from dataclasses import dataclass

import pytest

from .util import make_tempdir, remove_tree, run

LOCAL_SANS = "DNS:localhost,IP:127.0.0.1,IP:::1"

_OPENSSL_CNF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca ]
default_ca = ca_default
[ ca_default ]
database = {dir}/index.txt
new_certs_dir = {dir}/new
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = yes
[ policy_any ]
commonName = supplied
[ ext_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ ext_intermediate ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass
class Cert:
    name: str
    cert: str
    key: str
    pem: str          # cert (+ intermediates) + key, for servers that want one file (stunnel)
    chain: str        # cert followed by intermediates
    pin_sha256: str   # base64 SHA-256 of the SubjectPublicKeyInfo (DER)
    pin_sha256_hex: str

    def __fspath__(self):
        return self.cert


@dataclass
class CertSet:
    dir: str
    ca: Cert
    ca_file: str
    unknown_ca_file: str
    certs: dict

    def __getitem__(self, name):
        return self.certs[name]

    def issue(self, name, cn, ext_lines, directory, start=None, end=None, rsa=False):
        """Issue an extra certificate from the test CA into `directory`, e.g.
        ``certs.issue("ip_only", "ip.test", SERVER_EXT + ["subjectAltName = IP:127.0.0.1"], d)``;
        `start`/`end` are datetimes (default: yesterday .. +10 years). Returns a Cert."""
        m = _Maker(directory)
        return m.issue({"cert": self.ca.cert, "key": self.ca.key}, name, cn, ext_lines,
                       start=start, end=end, rsa=rsa)

    def __getattr__(self, name):
        try:
            return self.__dict__["certs"][name]
        except KeyError:
            raise AttributeError(name) from None


def _openssl(*args, cwd=None):
    return run(["openssl", *args])


def _ts(dt):
    return dt.strftime("%Y%m%d%H%M%SZ")


class _Maker:
    def __init__(self, d):
        self.d = d
        self.now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    def path(self, name, ext):
        return os.path.join(self.d, f"{name}{ext}")

    def new_ca_db(self, name):
        cadir = self.path(name, ".db")
        os.makedirs(os.path.join(cadir, "new"))
        open(os.path.join(cadir, "index.txt"), "w").close()
        with open(os.path.join(cadir, "serial"), "w") as f:
            # random-ish serials so two runs never issue the same issuer+serial
            f.write("%032X\n" % (int.from_bytes(os.urandom(15), "big") | 1 << 100))
        cnf = os.path.join(cadir, "openssl.cnf")
        with open(cnf, "w") as f:
            f.write(_OPENSSL_CNF.format(dir=cadir))
        return cnf

    def self_signed_ca(self, name, cn):
        cnf = self.new_ca_db(name)
        key, csr = self.key_and_csr(name, cn, cnf)
        crt = self.path(name, ".crt")
        _openssl("ca", "-batch", "-config", cnf, "-selfsign", "-keyfile", key, "-in", csr,
                 "-out", crt, "-notext", "-extensions", "ext_ca",
                 "-startdate", _ts(self.now - datetime.timedelta(days=1)),
                 "-enddate", _ts(self.now + datetime.timedelta(days=3650)))
        return {"name": name, "cert": crt, "key": key, "cnf": cnf}

    def key_and_csr(self, name, cn, cnf, rsa=False):
        key, csr = self.path(name, ".key"), self.path(name, ".csr")
        alg = ["-newkey", "rsa:2048"] if rsa else \
            ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        _openssl("req", "-new", "-config", cnf, *alg, "-noenc", "-keyout", key,
                 "-subj", f"/CN={cn}", "-out", csr)
        return key, csr

    def issue(self, ca, name, cn, ext_lines, start=None, end=None, rsa=False, intermediates=()):
        # one CA database per issued cert, so issuing can run in parallel
        cnf = self.new_ca_db(name)
        key, csr = self.key_and_csr(name, cn, cnf, rsa=rsa)
        ext = self.path(name, ".ext")
        with open(ext, "w") as f:
            f.write("[ ext ]\n" + "\n".join(ext_lines) + "\n")
        crt = self.path(name, ".crt")
        start = start or self.now - datetime.timedelta(days=1)
        end = end or self.now + datetime.timedelta(days=3650)
        _openssl("ca", "-batch", "-config", cnf, "-cert", ca["cert"], "-keyfile", ca["key"],
                 "-in", csr, "-out", crt, "-notext", "-extfile", ext, "-extensions", "ext",
                 "-startdate", _ts(start), "-enddate", _ts(end))
        return self.finish(name, crt, key, intermediates)

    def self_signed_leaf(self, name, cn, ext_lines):
        cnf = self.new_ca_db(name)
        key, csr = self.key_and_csr(name, cn, cnf)
        ext = self.path(name, ".ext")
        with open(ext, "w") as f:
            f.write("[ ext ]\n" + "\n".join(ext_lines) + "\n")
        crt = self.path(name, ".crt")
        _openssl("ca", "-batch", "-config", cnf, "-selfsign", "-keyfile", key, "-in", csr,
                 "-out", crt, "-notext", "-extfile", ext, "-extensions", "ext",
                 "-startdate", _ts(self.now - datetime.timedelta(days=1)),
                 "-enddate", _ts(self.now + datetime.timedelta(days=3650)))
        return self.finish(name, crt, key)

    def finish(self, name, crt, key, intermediates=()):
        with open(crt, "rb") as f:
            leaf = f.read()
        chain_data = leaf + b"".join(open(i, "rb").read() for i in intermediates)
        chain = self.path(name, "-chain.crt")
        with open(chain, "wb") as f:
            f.write(chain_data)
        pem = self.path(name, ".pem")
        with open(pem, "wb") as f:
            f.write(chain_data + open(key, "rb").read())
        # the SPKI of the certificate is the public half of its key
        der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                             capture_output=True, check=True).stdout
        h = hashlib.sha256(der).digest()
        return Cert(name, crt, key, pem, chain, base64.b64encode(h).decode(), h.hex())


SERVER_EXT = [
    "basicConstraints = critical,CA:FALSE",
    "keyUsage = critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid:always",
]


def make_certs(directory):
    """Create the whole test PKI under `directory` and return a CertSet."""
    m = _Maker(directory)
    ex = concurrent.futures.ThreadPoolExecutor(4)
    fca = ex.submit(m.self_signed_ca, "ca", "smtpc test CA")
    fother = ex.submit(m.self_signed_ca, "unknown-ca-root", "smtpc unknown CA")
    ca, other = fca.result(), fother.result()
    finter = ex.submit(m.issue, ca, "intermediate-ca", "smtpc test intermediate CA",
                       ["basicConstraints = critical,CA:TRUE,pathlen:0",
                        "keyUsage = critical,keyCertSign,cRLSign",
                        "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"])
    local = SERVER_EXT + [f"subjectAltName = {LOCAL_SANS}"]
    now = m.now
    d = datetime.timedelta
    jobs = {
        "server": (m.issue, ca, "server", "localhost", local),
        "server_rsa": (lambda *a: m.issue(*a, rsa=True), ca, "server_rsa", "localhost", local),
        "expired": (lambda *a: m.issue(*a, start=datetime.datetime(2020, 1, 1),
                                       end=datetime.datetime(2021, 1, 1)),
                    ca, "expired", "localhost", local),
        "not_yet_valid": (lambda *a: m.issue(*a, start=now + d(days=365), end=now + d(days=3650)),
                          ca, "not_yet_valid", "localhost", local),
        "wrong_host": (m.issue, ca, "wrong_host", "wrong.example.test",
                       SERVER_EXT + ["subjectAltName = DNS:wrong.example.test"]),
        "wildcard": (m.issue, ca, "wildcard", "*.example.test",
                     SERVER_EXT + ["subjectAltName = DNS:*.example.test"]),
        "unknown_ca": (m.issue, other, "unknown_ca", "localhost", local),
        "self_signed": (m.self_signed_leaf, "self_signed", "localhost",
                        ["basicConstraints = critical,CA:FALSE", "keyUsage = critical,digitalSignature",
                         "extendedKeyUsage = serverAuth", "subjectKeyIdentifier = hash",
                         f"subjectAltName = {LOCAL_SANS}"]),
        "chain": (lambda *a: m.issue({"cert": finter.result().cert, "key": finter.result().key},
                                     *a, intermediates=[finter.result().cert]),
                  "chain", "localhost", local),
        "client": (m.issue, ca, "client", "client.smtpc.test",
                   ["basicConstraints = critical,CA:FALSE",
                    "keyUsage = critical,digitalSignature",
                    "extendedKeyUsage = clientAuth",
                    "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always",
                    "subjectAltName = email:client@example.org"]),
    }
    with ex:
        futs = {name: ex.submit(job[0], *job[1:]) for name, job in jobs.items()}
        out = {name: f.result() for name, f in futs.items()}
        finter.result()
    ca_cert = m.finish("ca", ca["cert"], ca["key"])
    for f in os.listdir(directory):
        p = os.path.join(directory, f)
        if os.path.isfile(p):
            os.chmod(p, 0o644)
    return CertSet(directory, ca_cert, ca["cert"], other["cert"], out)


_PROCESS_CERTS = []


def process_certs():
    """This process's CertSet: made on first use, removed when the process exits.
    Every fixture here uses this one (so one CA per pytest process)."""
    if not _PROCESS_CERTS:
        d = make_tempdir("certs")
        try:
            _PROCESS_CERTS.append(make_certs(d))
        except BaseException:
            remove_tree(d)
            raise
        atexit.register(remove_tree, d)
    return _PROCESS_CERTS[0]


@pytest.fixture(scope="session")
def certs():
    return process_certs()
