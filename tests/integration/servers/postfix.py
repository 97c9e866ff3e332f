"""A private Postfix 3.7 instance (Debian's postfix package) for integration tests,
plus smtp-sink.

Usage in a test file::

    from servers.postfix import postfix, postfix_server  # noqa: F401

    def test_send(postfix):                    # function scope: queue + Maildir emptied first
        with smtplib.SMTP(postfix.host, postfix.port) as s:
            s.sendmail("a@example.org", ["b@example.net"], b"Subject: x\\r\\n\\r\\nhi\\r\\n")
        [m] = postfix.wait_for(1)              # list of Delivered, oldest first
        assert m.mail_from == "a@example.org" and m.rcpt_to == "b@example.net"
        assert m.original == b"Subject: x\\n\\nhi\\n"

``postfix_server`` is session-scoped (one instance per pytest process, even
when several test files import it; starts in about 0.5 s); ``postfix`` is the
same object after ``clear()``. Test files need not import ``certs``.

Listeners (all on 127.0.0.1 *and* [::1], same port number, ports chosen at run time):

================== ====================================================================
attribute          service
================== ====================================================================
port               plain SMTP: no TLS, no AUTH. EHLO: PIPELINING, SIZE 10240000, VRFY,
                   ETRN, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING
submission_port    STARTTLS offered (not required); AUTH offered only after STARTTLS
                   (smtpd_tls_auth_only); AUTH required to send: MAIL FROM
                   without it gets 530 5.7.0 (``AUTH_REQUIRED``)
smtps_port         implicit TLS (wrappermode); AUTH required to send (530 5.7.0)
auth_plain_port    plain, no TLS at all, AUTH offered in cleartext (all mechanisms),
                   AUTH optional (mail accepted without it)
ccert_port         STARTTLS *required* (security level encrypt) and a client
                   certificate from the test CA required (certs.client); no AUTH
``starttls_ports`` dict name -> port: STARTTLS offered (not required), no AUTH,
                   presenting another certificate (``STARTTLS_MATRIX``): server,
                   server_rsa, expired, not_yet_valid, wrong_host, self_signed,
                   unknown_ca, wildcard, chain (leaf + intermediate),
                   chain_incomplete (leaf only: must fail verification),
                   tls12_only (good cert, TLS 1.2 only)
================== ====================================================================

TLS: certificate ``certs.server`` (EC P-256, SAN localhost/127.0.0.1/::1), CA in
``postfix.ca_file``; TLSv1.2 and 1.3. ``smtpd_tls_received_header = yes``, so a
delivered message's Received header tells the TLS version/cipher and whether a
client certificate was verified ("Client CN ... (verified OK)").

SASL (Cyrus, sasldb): ``postfix.mechanisms`` = PLAIN LOGIN CRAM-MD5 DIGEST-MD5
SCRAM-SHA-1 SCRAM-SHA-256. Users (``postfix.users``): ``alice`` /
``alice-secret`` (also ``postfix.user``/``postfix.password``), ``bob`` with a
password full of specials (space, quotes, colon, @, backslash), and
``carol@example.org`` (login name with a domain). Wrong credentials: 535 5.7.8.
DIGEST-MD5: realm ``postfix.realm`` (smtpc.test; carol's realm is example.org,
username "carol"), any digest-uri host is accepted. All six mechanisms are
self-tested (SCRAM and DIGEST-MD5 with small clients in test_servers_postfix.py).

Delivery: every recipient address of every domain is accepted (virtual mailbox
catch-all: ``virtual_mailbox_domains = static:all``) and delivered by
virtual(8) into one Maildir, one file per recipient. Postfix prepends
``Return-Path: <MAIL FROM>``, ``X-Original-To: <RCPT TO>``, ``Delivered-To:`` and
its ``Received:`` header; ``Delivered.original`` is the message as the client
sent it (dot-unstuffed, **LF line endings**: Postfix stores lines, not CRLF;
``original_crlf`` has CRLF; ``parsed()`` gives an email.message.EmailMessage;
``header(name)`` reads the stored file's header; ``received`` is Postfix's
Received header, unfolded). ``mail_from``, ``rcpt_to`` and ``delivered_to`` give
the envelope. No header rewriting or added headers for our clients
(``local_header_rewrite_clients`` is empty). NOTIFY=SUCCESS/DELAY DSNs
and bounces are also delivered into the same Maildir (they are mail to the
sender's address), so count them in ``wait_for``.

``message_size_limit`` is ``postfix.size_limit`` (10240000). Error replies are
not delayed (smtpd_error_sleep_time 0). Logs: ``postfix.log()``.

Scripted refusals (``REFUSALS`` in this module; on every port): the address's
local part, alone or followed by ``-``, ``+`` or ``.`` and anything, picks the reply
(so ``reject-3@example.org`` works as well as ``reject@example.org``):

- RCPT TO ``reject``: 550 5.1.1, ``tempfail``: 450 4.2.1, ``full``: 552 5.2.2
- MAIL FROM ``sender-reject``: 553 5.7.1, ``sender-tempfail``: 451 4.7.1
- MAIL FROM ``eod-reject``: 554 5.7.1 *after* the data (DATA's final dot or
  BDAT LAST), ``eod-tempfail``: 451 4.3.0 after the data
- a ``Subject:`` containing ``[smtpc-reject]``: 550 5.7.1 after the data

Other configurations: ``postfix_factory(main_cf={...})`` (function scope) starts
another private instance with extra main.cf settings (e.g. a small
``message_size_limit``, ``smtpd_timeout``); it is stopped after the test.

Helpers: ``messages()``, ``wait_for(n, timeout=30)`` (waits until at least n
messages are in the Maildir, then returns all, oldest first), ``settle()``
(waits until nothing is left to deliver, returns the messages: ``assert
postfix.settle() == []`` proves nothing was accepted), ``clear()``,
``queue_files()`` (ids still in the queue), ``postconf(*args)``, ``log()``.
Attributes: ``dir``, ``config_dir``, ``queue_dir``, ``maildir``, ``ca_file``,
``certs`` (the CertSet), ``hostname`` (mx.smtpc.test, the banner/EHLO name).

smtp-sink (fast sink for benchmarks): ``smtp_sink`` fixture (function scope) or
``start_smtp_sink(extra_args=(), backlog=256, host="127.0.0.1") -> SmtpSink``
with ``.host``, ``.port``, ``.stop()``. It runs as ``-u nobody`` (required as
root), answers EHLO with PIPELINING 8BITMIME AUTH(PLAIN LOGIN, accepts
anything) XCLIENT XFORWARD ENHANCEDSTATUSCODES DSN (no SIZE, no CHUNKING, no
STARTTLS) and discards the mail; see smtp-sink(1) for extra_args (``-c``
counts, ``-d DIR`` dumps, ``-q``/``-r``... inject errors).

Safety: main.cf is checked (``postconf -c``) to point at the private
directories before anything starts; the system instance (/etc/postfix) is never
used (no main.cf there: Debian's "No configuration"). Stopping TERMs the
private master (what ``postfix -c DIR stop`` does, without its 1 s sleeps). A
watchdog kills master if the pytest process dies, and each instance records its
owner's pid in ``<dir>/owner.pid`` so the next start reaps leftovers.

Traps found (Debian 12, Postfix 3.7 in this sandbox):

- Postfix will not read main.cf/master.cf/tables modified less than a second
  ago: it sleeps 300 ms at a time. Generated files are backdated.
- ``postfix start``'s integrity check (post-install, postsuper, find) costs
  seconds on a loaded 2-core box; the queue is pre-created from
  /etc/postfix/postfix-files and ``quick-start`` skips the check.
- Debian's Postfix reads the Cyrus config only from
  ``$config_directory/sasl/smtpd.conf``; the sasldb must be readable by user
  postfix (kept outside config_directory, or ``postfix check`` warns).
- ``maillog_file`` must be under ``maillog_file_prefixes`` and needs the
  ``postlog`` service in master.cf; ``chroot`` is off in our master.cf.
- PID 1 in this sandbox does not reap orphans: a stopped master stays
  ``<defunct>`` (harmless); liveness checks treat zombies as dead.
- Mail is stored with LF line endings; ``Delivered.original_crlf`` restores CRLF.
- smtplib sends SIZE= with MAIL FROM, so an oversized message is refused at
  MAIL (552 5.3.4), not after DATA.
- ccert_port without a client certificate: Postfix drops the connection right
  after the handshake (with TLS 1.3 the client notices at its next read).
- smtp-sink refuses to run as root without ``-u``.
"""
import contextlib
import glob
import os
import pwd
import re
import signal
import socket
import time
from dataclasses import dataclass

import pytest

from .certs import process_certs
from .util import (free_port, make_tempdir, pid_alive, read_log, remove_tree, require, run,
                   shared_instance, stale_tempdirs, start_process, stop_process, stop_watchdog,
                   wait_for_port, watchdog)

HOSTNAME = "mx.smtpc.test"
SASL_REALM = "smtpc.test"
MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
USERS = {
    "alice": "alice-secret",
    "bob": 'b0b p@ss:"w0rd"\\x',
    "carol@example.org": "carol-secret",
}
SIZE_LIMIT = 10240000
POSTFIX = "/usr/sbin/postfix"
VIRTUAL_UID = 65534  # nobody: owns the Maildir

# Addresses whose local part is the key, or the key followed by one of "-+."
# and anything (reject@x, reject-7@x, reject+a@x), get these replies:
REFUSALS = {
    # RCPT TO
    "reject": "550 5.1.1 Recipient rejected (smtpc test)",
    "tempfail": "450 4.2.1 Recipient temporarily unavailable (smtpc test)",
    "full": "552 5.2.2 Mailbox full (smtpc test)",
    # MAIL FROM (sender address)
    "sender-reject": "553 5.7.1 Sender rejected (smtpc test)",
    "sender-tempfail": "451 4.7.1 Sender temporarily rejected (smtpc test)",
    # end of DATA / last BDAT (sender address)
    "eod-reject": "554 5.7.1 Message rejected after data (smtpc test)",
    "eod-tempfail": "451 4.3.0 Message deferred after data (smtpc test)",
}
# A Subject header containing this is refused at end of data with 550 5.7.1 (header_checks)
REJECT_SUBJECT_TAG = "[smtpc-reject]"
# MAIL FROM without AUTH on submission_port / smtps_port
AUTH_REQUIRED = "530 5.7.0 Authentication required (smtpc test)"


def _access(keys):
    return "".join(f"/^{k}([-+.][^@]*)?@/ {REFUSALS[k]}\n" for k in keys)


ACCESS_MAPS = {
    "recipient_access": _access(["reject", "tempfail", "full"]),
    "sender_access": _access(["sender-reject", "sender-tempfail"]),
    "eod_access": _access(["eod-reject", "eod-tempfail"]),
    "header_checks": "/^Subject:.*\\[smtpc-reject\\]/ REJECT 5.7.1 Content rejected (smtpc test)\n",
    "auth_required": f"/^/ {AUTH_REQUIRED}\n",
}

MASTER_CF_BASE = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# service name -> extra -o options
SERVICES = {
    "port": [],
    "submission_port": ["smtpd_tls_security_level=may", "smtpd_sasl_auth_enable=yes",
                        "smtpd_tls_auth_only=yes",
                        "smtpd_sender_restrictions=$smtpc_auth_required_restrictions"],
    "smtps_port": ["smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt",
                   "smtpd_sasl_auth_enable=yes",
                   "smtpd_sender_restrictions=$smtpc_auth_required_restrictions"],
    "auth_plain_port": ["smtpd_sasl_auth_enable=yes", "smtpd_tls_auth_only=no"],
    "ccert_port": ["smtpd_tls_security_level=encrypt", "smtpd_tls_ask_ccert=yes",
                   "smtpd_tls_req_ccert=yes"],
}

# STARTTLS ports presenting other certificates (postfix.starttls_ports[name]):
# name -> (certs name, send the leaf only, extra -o options). No AUTH there.
STARTTLS_MATRIX = {
    "server": ("server", False, []),
    "server_rsa": ("server_rsa", False, []),
    "expired": ("expired", False, []),
    "not_yet_valid": ("not_yet_valid", False, []),
    "wrong_host": ("wrong_host", False, []),
    "self_signed": ("self_signed", False, []),
    "unknown_ca": ("unknown_ca", False, []),
    "wildcard": ("wildcard", False, []),
    "chain": ("chain", False, []),
    "chain_incomplete": ("chain", True, []),  # leaf without its intermediate
    "tls12_only": ("server", False, ["smtpd_tls_protocols=!SSLv2,!SSLv3,!TLSv1,!TLSv1.1,!TLSv1.3",
                                     "smtpd_tls_mandatory_protocols=!SSLv2,!SSLv3,!TLSv1,!TLSv1.1,!TLSv1.3"]),
}


@dataclass
class Delivered:
    path: str
    raw: bytes            # the Maildir file as stored (LF line endings)
    mail_from: str        # from Return-Path (MAIL FROM; "" for the null sender)
    rcpt_to: str          # from X-Original-To (RCPT TO as the client sent it)
    delivered_to: str     # from Delivered-To (after rewriting: same here)

    @property
    def original(self):
        """The message as the client sent it (LF endings): Postfix's prepended
        Return-Path, X-Original-To, Delivered-To and first Received removed."""
        lines = self.raw.split(b"\n")
        i = 0
        while i < len(lines) and lines[i].split(b":", 1)[0].lower() in (
                b"return-path", b"x-original-to", b"delivered-to"):
            i += 1
        if i < len(lines) and lines[i].lower().startswith(b"received:"):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
        return b"\n".join(lines[i:])

    @property
    def original_crlf(self):
        return self.original.replace(b"\n", b"\r\n")

    @property
    def received(self):
        """Postfix's own Received header (unfolded), e.g. to check TLS details."""
        m = re.search(rb"^Received: .*?(?=^\S)", self.raw, re.S | re.M)
        return re.sub(rb"\s*\n\s+", b" ", m.group(0)).decode("utf-8", "replace").strip() if m else ""

    def parsed(self):
        """The original message parsed by Python's email (policy=default)."""
        import email
        import email.policy
        return email.message_from_bytes(self.original, policy=email.policy.default)

    def header(self, name):
        import email
        import email.policy
        return email.message_from_bytes(self.raw, policy=email.policy.compat32)[name]


def _parse(path):
    with open(path, "rb") as f:
        raw = f.read()
    head = raw.split(b"\n\n", 1)[0]

    def first(name):
        m = re.search(rb"^" + name + rb": ?(.*)$", head, re.M | re.I)
        return m.group(1).decode("utf-8", "replace").strip() if m else None

    rp = first(b"Return-Path") or ""
    return Delivered(path, raw, rp[1:-1] if rp.startswith("<") else rp,
                     first(b"X-Original-To"), first(b"Delivered-To"))


def free_dual_ports(n):
    """n distinct ports free on both 127.0.0.1 and ::1."""
    chosen = []
    held = []
    try:
        while len(chosen) < n:
            s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s4.bind(("127.0.0.1", 0))
            p = s4.getsockname()[1]
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                s6.bind(("::1", p))
            except OSError:
                s4.close()
                s6.close()
                continue
            held += [s4, s6]
            chosen.append(p)
        return chosen
    finally:
        for s in held:
            s.close()


class PostfixServer:
    host = "127.0.0.1"
    host6 = "::1"
    hostname = HOSTNAME
    mechanisms = MECHANISMS
    users = USERS
    user = "alice"
    password = USERS["alice"]
    size_limit = SIZE_LIMIT
    realm = SASL_REALM

    def __init__(self, certs, base=None, main_cf=None):
        self.extra_main_cf = dict(main_cf or {})
        self.certs = certs
        self.ca_file = certs.ca_file if certs else None
        self.dir = base or make_tempdir("postfix", reap=False)  # reaped by start()
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.mail_base = os.path.join(self.dir, "mail")
        self.maildir = os.path.join(self.mail_base, "inbox")
        self.logfile = os.path.join(self.dir, "log", "maillog")
        self.sasldb = os.path.join(self.dir, "sasl", "sasldb2")
        self.started = False
        self._watchdog = None

    # -- configuration -------------------------------------------------
    def _write_config(self, ports):
        for name, port in ports.items():
            if name in SERVICES:
                setattr(self, name, port)
        self.starttls_ports = {n: ports["starttls_" + n] for n in STARTTLS_MATRIX}
        pf = pwd.getpwnam("postfix")
        for d in (self.config_dir, os.path.join(self.config_dir, "sasl"), self.queue_dir,
                  os.path.dirname(self.logfile), os.path.dirname(self.sasldb)):
            os.makedirs(d, 0o755, exist_ok=True)
        os.makedirs(self.data_dir, 0o700, exist_ok=True)
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        for sub in ("", "new", "cur", "tmp"):
            p = os.path.join(self.maildir, sub)
            os.makedirs(p, 0o700, exist_ok=True)
            os.chown(p, VIRTUAL_UID, VIRTUAL_UID)
        os.chmod(self.mail_base, 0o755)
        srv = self.certs.server
        main_cf = f"""\
# private smtpc test instance; generated by tests/integration/servers/postfix.py
compatibility_level = 3.6
config_directory = {self.config_dir}
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = {HOSTNAME}
mydomain = smtpc.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
inet_interfaces = loopback-only
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
smtpd_banner = $myhostname ESMTP smtpc-test-postfix
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
in_flow_delay = 0
local_header_rewrite_clients =
append_dot_mydomain = no
biff = no
message_size_limit = {SIZE_LIMIT}
smtputf8_enable = yes
virtual_mailbox_domains = static:all
virtual_mailbox_base = {self.mail_base}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{VIRTUAL_UID}
virtual_gid_maps = static:{VIRTUAL_UID}
maillog_file = {self.logfile}
maillog_file_prefixes = {os.path.dirname(self.logfile)}
smtpd_tls_cert_file = {srv.chain}
smtpd_tls_key_file = {srv.key}
smtpd_tls_CAfile = {self.certs.ca_file}
smtpd_tls_security_level = none
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_sasl_auth_enable = no
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = {SASL_REALM}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
broken_sasl_auth_clients = no
# scripted refusals by address prefix (see REFUSALS); sender checks at MAIL FROM
smtpd_delay_reject = no
smtpd_sender_restrictions = check_sender_access regexp:{self.config_dir}/sender_access
smtpc_auth_required_restrictions = check_sender_access regexp:{self.config_dir}/sender_access,
    permit_sasl_authenticated, check_sender_access regexp:{self.config_dir}/auth_required
smtpd_recipient_restrictions = check_recipient_access regexp:{self.config_dir}/recipient_access, permit
smtpd_end_of_data_restrictions = check_sender_access regexp:{self.config_dir}/eod_access
header_checks = regexp:{self.config_dir}/header_checks
"""
        for k, v in self.extra_main_cf.items():
            main_cf += f"{k} = {v}\n"
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write(main_cf)
        lines = []
        for name, opts in self._services().items():
            for host in ("127.0.0.1", "[::1]"):
                lines.append(f"{host}:{ports[name]} inet n - n - - smtpd")
                lines += [f"  -o {o}" for o in opts]
        for name, text in ACCESS_MAPS.items():
            with open(os.path.join(self.config_dir, name), "w") as f:
                f.write(text)
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write("\n".join(lines) + "\n" + MASTER_CF_BASE)
        with open(os.path.join(self.config_dir, "sasl", "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    f"mech_list: {' '.join(MECHANISMS)}\nsasldb_path: {self.sasldb}\n")
        # Postfix will not read a configuration or table file modified within the
        # last second (it may still be being edited): it sleeps 300 ms at a time
        # until the file is old enough, >1 s per start. Backdate our files.
        old = time.time() - 60
        for root, _, files in os.walk(self.config_dir):
            for name in files:
                os.utime(os.path.join(root, name), (old, old))

    def _prepare_queue(self):
        """Create the queue/data directories the way `postfix start`'s integrity
        check (post-install create-missing) would, from $meta_directory/postfix-files,
        and drop a `quick-start` file so `postfix start` skips that slow, exec-heavy
        check (seconds on a loaded 2-core machine). Returns False if postfix-files
        could not be read (then the normal, checked start is used)."""
        try:
            with open("/etc/postfix/postfix-files") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        pf = pwd.getpwnam("postfix")
        import grp
        names = {"$mail_owner": pf.pw_uid, "root": 0, "-": None}
        groups = {"$setgid_group": grp.getgrnam("postdrop").gr_gid, "-": None, "root": 0}
        where = {"$queue_directory": self.queue_dir, "$data_directory": self.data_dir}
        made = 0
        for line in lines:
            parts = line.split(":")
            if len(parts) < 5 or parts[1] != "d":
                continue
            top, _, rest = parts[0].partition("/")
            if top not in where:
                continue
            path = os.path.join(where[top], rest) if rest else where[top]
            if parts[2] not in names or parts[3] not in groups:
                return False
            uid = names[parts[2]] or 0
            gid = groups[parts[3]]
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, 0 if gid is None else gid)
            os.chmod(path, int(parts[4], 8))
            made += 1
        if made < 10:
            return False
        open(os.path.join(self.queue_dir, "quick-start"), "w").close()
        return True

    def _services(self):
        """service key -> -o options: the fixed ports plus the STARTTLS cert matrix."""
        out = dict(SERVICES)
        for name, (cert, leaf_only, opts) in STARTTLS_MATRIX.items():
            c = self.certs[cert]
            out["starttls_" + name] = ["smtpd_tls_security_level=may",
                                       f"smtpd_tls_cert_file={c.cert if leaf_only else c.chain}",
                                       f"smtpd_tls_key_file={c.key}", *opts]
        return out

    def _make_sasldb(self):
        if os.path.exists(self.sasldb):
            return
        for user, pw in USERS.items():
            name, _, realm = user.partition("@")
            run(["saslpasswd2", "-f", self.sasldb, "-u", realm or SASL_REALM, "-c", "-p", name],
                input=pw.encode())
        pf = pwd.getpwnam("postfix")
        os.chown(self.sasldb, pf.pw_uid, pf.pw_gid)
        os.chmod(self.sasldb, 0o600)

    def _check_private(self):
        """Refuse to start anything unless main.cf points at our private dirs."""
        out = self.postconf("-h", "config_directory", "queue_directory", "data_directory").split()
        want = [self.config_dir, self.queue_dir, self.data_dir]
        if out != want or not all(p.startswith(self.dir + "/") for p in out):
            raise RuntimeError(f"private Postfix config does not point at {self.dir}: {out}")

    def postconf(self, *args):
        return run(["postconf", "-c", self.config_dir, *args]).stdout.decode()

    # -- life cycle ----------------------------------------------------
    def start(self, attempts=3):
        reap_stale_instances()
        last = None
        for _ in range(attempts):
            names = list(self._services())
            ports = dict(zip(names, free_dual_ports(len(names))))
            self._write_config(ports)
            self._make_sasldb()
            self._check_private()
            self._prepare_queue()
            require(POSTFIX, "postfix")
            require("/usr/sbin/saslpasswd2", "sasl2-bin")
            r = run([POSTFIX, "-c", self.config_dir, "start"], check=False, timeout=60)
            if r.returncode == 0:
                self.started = True
                try:
                    # `postfix start` returns once master has opened every listener
                    # (master -w); one probe is a sanity check.
                    wait_for_port(self.port, self.host, timeout=30, what="postfix",
                                  log=self.logfile)
                    pid = self._master_pid()
                    if pid:  # master daemonized: stop it if this process dies
                        self._watchdog = watchdog(pid)
                    return self
                except (TimeoutError, RuntimeError) as e:
                    last = e
            else:
                last = RuntimeError(f"postfix start failed: {r.stdout.decode()}{r.stderr.decode()}"
                                    f"\n{read_log(self.logfile)}")
            self.stop()
        raise last

    def stop(self):
        """What `postfix -c DIR stop` does (TERM master, which stops its children),
        polling every 20 ms instead of its 1 s sleeps; KILL the group if it lingers."""
        if not self.started:
            return
        pid = self._master_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        else:
            run([POSTFIX, "-c", self.config_dir, "abort"], check=False, timeout=30)
        stop_watchdog(self._watchdog)
        self._watchdog = None
        self.started = False

    def _master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return pid if b"master" in f.read() else None
        except (OSError, ValueError, IndexError):
            return None

    def close(self):
        try:
            self.stop()
        finally:
            remove_tree(self.dir)

    # -- mail ------------------------------------------------------------
    def messages(self):
        files = glob.glob(os.path.join(self.maildir, "new", "*")) + \
            glob.glob(os.path.join(self.maildir, "cur", "*"))
        files.sort(key=lambda p: (os.stat(p).st_mtime_ns, os.path.basename(p)))
        return [_parse(p) for p in files]

    def wait_for(self, n, timeout=30.0):
        """Wait until at least n messages were delivered; return them all, oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(msgs)} of {n} messages delivered after {timeout}s; "
                                   f"queue: {self.queue_files()}\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def settle(self, timeout=30.0):
        """Wait until Postfix has nothing left to deliver (the queue holds nothing but
        deferred mail); return the delivered messages. Use it to assert that nothing
        was delivered: ``assert postfix.settle() == []``."""
        deadline = time.monotonic() + timeout
        while True:
            busy = [q for q in ("maildrop", "incoming", "active")
                    if any(files for _, _, files in os.walk(os.path.join(self.queue_dir, q)))]
            if not busy:
                return self.messages()
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue still busy ({busy}) after {timeout}s")
            time.sleep(0.02)

    def queue_files(self):
        ids = []
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.queue_dir, q)):
                ids += files
        return ids

    def clear(self):
        """Drop everything still queued and empty the Maildir."""
        if self.queue_files():
            run(["postsuper", "-c", self.config_dir, "-d", "ALL"], check=False)
        for sub in ("new", "cur", "tmp"):
            for p in glob.glob(os.path.join(self.maildir, sub, "*")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    def log(self):
        return read_log(self.logfile, limit=1 << 20)


def reap_stale_instances():
    """Stop private instances left behind by a pytest process that was killed
    (e.g. by a ctest timeout): master daemonizes, so it outlives its owner."""
    for d in stale_tempdirs("postfix"):
        stale = PostfixServer(None, base=d)
        stale.started = os.path.exists(os.path.join(stale.queue_dir, "pid", "master.pid"))
        with contextlib.suppress(Exception):
            stale.close()


def _create_postfix(certs):
    srv = PostfixServer(certs)
    try:
        return srv.start()
    except BaseException:
        srv.close()
        raise


@pytest.fixture(scope="session")
def postfix_server():
    certs = process_certs()
    with shared_instance("postfix", lambda: _create_postfix(certs), PostfixServer.close) as srv:
        yield srv


@pytest.fixture
def postfix_factory(postfix_server):
    """postfix_factory(main_cf={"message_size_limit": "1000"}) -> a private extra
    instance with those main.cf settings on top (stopped after the test; ~1-2 s)."""
    made = []

    def make(main_cf=None):
        srv = PostfixServer(postfix_server.certs, main_cf=main_cf)
        made.append(srv)
        return srv.start()

    try:
        yield make
    finally:
        for srv in made:
            srv.close()


@pytest.fixture
def postfix(postfix_server):
    postfix_server.clear()
    return postfix_server


# -- smtp-sink -----------------------------------------------------------------
class SmtpSink:
    def __init__(self, proc, port, dir):
        self.proc, self.port, self.dir = proc, port, dir
        self.host = "127.0.0.1"

    def stop(self):
        stop_process(self.proc)
        remove_tree(self.dir)


def start_smtp_sink(extra_args=(), backlog=256, host="127.0.0.1"):
    """Start /usr/sbin/smtp-sink on a free port (see smtp-sink(1) for extra_args,
    e.g. ["-c"] to count, ["-d", dir] to dump mail). Returns SmtpSink."""
    require("/usr/sbin/smtp-sink", "postfix")
    d = make_tempdir("smtp-sink")
    log = os.path.join(d, "log")
    for _ in range(3):
        port = free_port(host)
        hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # required as root
        proc = start_process(["/usr/sbin/smtp-sink", *user, *extra_args, hp, str(backlog)],
                             log=log, cwd=d)
        try:
            wait_for_port(port, host, timeout=15, proc=proc, log=log, what="smtp-sink")
            return SmtpSink(proc, port, d)
        except RuntimeError:
            stop_process(proc)
    remove_tree(d)
    raise RuntimeError("smtp-sink did not start\n" + read_log(log))


@pytest.fixture
def smtp_sink():
    s = start_smtp_sink()
    try:
        yield s
    finally:
        s.stop()


if __name__ == "__main__":  # manual use: python3 -m servers.postfix
    import tempfile
    from .certs import make_certs
    cd = tempfile.mkdtemp()
    srv = PostfixServer(make_certs(cd))
    t = time.monotonic()
    srv.start()
    print(f"started in {time.monotonic() - t:.2f}s", {k: getattr(srv, k) for k in SERVICES}, srv.starttls_ports, srv.dir)
    try:
        input("enter to stop ")
    finally:
        srv.close()
        remove_tree(cd)
