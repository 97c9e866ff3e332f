"""A private Postfix 3.7 instance (Debian's postfix package) for integration tests,
plus smtp-sink.

Usage in a test file::

    from servers.certs import certs            # noqa: F401 (needed by postfix_server)
    from servers.postfix import postfix, postfix_server  # noqa: F401

    def test_send(postfix):                    # function scope: queue + Maildir emptied first
        with smtplib.SMTP(postfix.host, postfix.port) as s:
            s.sendmail("a@example.org", ["b@example.net"], b"Subject: x\\r\\n\\r\\nhi\\r\\n")
        [m] = postfix.wait_for(1)              # list of Delivered, oldest first
        assert m.mail_from == "a@example.org" and m.rcpt_to == "b@example.net"
        assert m.original == b"Subject: x\\n\\nhi\\n"

``postfix_server`` is session-scoped (one instance per pytest process, started
in about a second); ``postfix`` is the same object after ``clear()``.

Listeners (all on 127.0.0.1 *and* [::1], same port number, ports chosen at run time):

================== ====================================================================
attribute          service
================== ====================================================================
port               plain SMTP: no TLS, no AUTH. EHLO offers PIPELINING, SIZE, ETRN(?),
                   ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING (VRFY too)
submission_port    STARTTLS offered (not required); AUTH offered only after STARTTLS
                   (smtpd_tls_auth_only); mail accepted without AUTH as well
smtps_port         implicit TLS (wrappermode) + AUTH
auth_plain_port    plain, no TLS at all, AUTH offered in cleartext (all mechanisms)
ccert_port         STARTTLS *required* (security level encrypt) and a client
                   certificate from the test CA required (certs.client); no AUTH
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

Delivery: every recipient address of every domain is accepted (virtual mailbox
catch-all: ``virtual_mailbox_domains = static:all``) and delivered by
virtual(8) into one Maildir, one file per recipient. Postfix prepends
``Return-Path: <MAIL FROM>``, ``X-Original-To: <RCPT TO>``, ``Delivered-To:`` and
its ``Received:`` header; ``Delivered.original`` is the message as the client
sent it (dot-unstuffed, **LF line endings**: Postfix stores lines, not CRLF;
``original_crlf`` has CRLF). No header rewriting or added headers for our
clients (``local_header_rewrite_clients`` is empty). NOTIFY=SUCCESS/DELAY DSNs
and bounces are also delivered into the same Maildir (they are mail to the
sender's address), so count them in ``wait_for``.

``message_size_limit`` is ``postfix.size_limit`` (10240000). Error replies are
not delayed (smtpd_error_sleep_time 0). Logs: ``postfix.log()``.

Helpers: ``messages()``, ``wait_for(n, timeout=30)`` (waits until at least n
messages are in the Maildir, then returns all, oldest first), ``clear()``,
``queue_files()`` (ids still in the queue), ``postconf(*args)``.

smtp-sink (fast sink for benchmarks): ``smtp_sink`` fixture (function scope) or
``start_smtp_sink(extra_args=(), backlog=256, host="127.0.0.1") -> SmtpSink``
with ``.host``, ``.port``, ``.stop()``. It runs as ``-u nobody`` (required as
root), answers EHLO with PIPELINING 8BITMIME AUTH(PLAIN LOGIN, accepts
anything) XCLIENT XFORWARD ENHANCEDSTATUSCODES DSN (no SIZE, no CHUNKING, no
STARTTLS) and discards the mail; see smtp-sink(1) for extra_args (``-c``
counts, ``-d DIR`` dumps, ``-q``/``-r``... inject errors).

Stale instances: each instance records its pytest pid in ``<dir>/owner.pid``;
starting a new one stops and removes instances whose owner is gone (master
daemonizes, so a killed pytest would otherwise leak one).
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

from .certs import certs  # noqa: F401  (fixture used by postfix_server)
from .util import (free_port, make_tempdir, read_log, remove_tree, run, start_process,
                   shared_instance, stop_process, wait_for_port)

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
                        "smtpd_tls_auth_only=yes"],
    "smtps_port": ["smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt",
                   "smtpd_sasl_auth_enable=yes"],
    "auth_plain_port": ["smtpd_sasl_auth_enable=yes", "smtpd_tls_auth_only=no"],
    "ccert_port": ["smtpd_tls_security_level=encrypt", "smtpd_tls_ask_ccert=yes",
                   "smtpd_tls_req_ccert=yes"],
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

    def __init__(self, certs, base=None):
        self.certs = certs
        self.ca_file = certs.ca_file if certs else None
        self.dir = base or make_tempdir("postfix")
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.mail_base = os.path.join(self.dir, "mail")
        self.maildir = os.path.join(self.mail_base, "inbox")
        self.logfile = os.path.join(self.dir, "log", "maillog")
        self.sasldb = os.path.join(self.dir, "sasl", "sasldb2")
        self.started = False

    # -- configuration -------------------------------------------------
    def _write_config(self, ports):
        for name, port in ports.items():
            setattr(self, name, port)
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
"""
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write(main_cf)
        lines = []
        for name, opts in SERVICES.items():
            for host in ("127.0.0.1", "[::1]"):
                lines.append(f"{host}:{ports[name]} inet n - n - - smtpd")
                lines += [f"  -o {o}" for o in opts]
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write("\n".join(lines) + "\n" + MASTER_CF_BASE)
        with open(os.path.join(self.config_dir, "sasl", "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    f"mech_list: {' '.join(MECHANISMS)}\nsasldb_path: {self.sasldb}\n")

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
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        last = None
        for _ in range(attempts):
            ports = dict(zip(SERVICES, free_dual_ports(len(SERVICES))))
            self._write_config(ports)
            self._make_sasldb()
            self._check_private()
            r = run([POSTFIX, "-c", self.config_dir, "start"], check=False, timeout=60)
            if r.returncode == 0:
                self.started = True
                try:
                    # `postfix start` returns once master has opened every listener
                    # (master -w); one probe is a sanity check.
                    wait_for_port(self.port, self.host, timeout=30, what="postfix",
                                  log=self.logfile)
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
        pidfile = os.path.join(self.queue_dir, "pid", "master.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                is_master = b"master" in f.read()
        except (OSError, ValueError, IndexError):
            pid, is_master = None, False
        if is_master:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        else:
            run([POSTFIX, "-c", self.config_dir, "abort"], check=False, timeout=30)
        self.started = False

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


def _pid_alive(pid):
    """True if pid runs (a zombie, e.g. under a PID 1 that does not reap, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def reap_stale_instances():
    """Stop private instances left behind by a pytest process that was killed
    (e.g. by a ctest timeout): master daemonizes, so it outlives its owner."""
    import tempfile
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "smtpc-postfix-*")):
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                owner = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        stale = PostfixServer.__new__(PostfixServer)
        stale.__init__(None, base=d)
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
def postfix_server(certs):
    with shared_instance("postfix", lambda: _create_postfix(certs), PostfixServer.close) as srv:
        yield srv


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
    print(f"started in {time.monotonic() - t:.2f}s", {k: getattr(srv, k) for k in SERVICES}, srv.dir)
    try:
        input("enter to stop ")
    finally:
        srv.close()
        remove_tree(cd)
