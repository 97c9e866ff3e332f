"""Real proxies for the proxy tests: SOCKS5 (dante-server, microsocks) and HTTP
CONNECT (tinyproxy), from Debian, on free loopback ports.

Usage in a test file::

    from servers.proxies import socks5_proxy, http_auth_proxy  # noqa: F401

    def test_x(socks5_proxy, postfix):
        p = socks5_proxy                 # Proxy
        p.host, p.port                   # where the proxy listens (127.0.0.1)
        p.username, p.password           # None for no-auth proxies
        p.url                            # e.g. "socks5://u:p@127.0.0.1:1080" / "http://127.0.0.1:8888"

Session-scoped fixtures (one instance per pytest process, each started lazily
on first use, in about 0.1-0.3 s):

======================= ============================================================
fixture                 what
======================= ============================================================
socks5_proxy            dante (danted), SOCKS5, no authentication (method 00 only)
socks5_auth_proxy       dante, SOCKS5 username/password only (RFC 1929, method 02);
                        credentials: a throwaway system user (see below)
microsocks_proxy        microsocks, SOCKS5, no authentication
microsocks_auth_proxy   microsocks -u/-P: username/password only (method 02):
                        "smtpc-user" / "smtpc-pass w:rd"
http_proxy              tinyproxy, HTTP CONNECT to any port, no authentication
http_auth_proxy         tinyproxy with BasicAuth ("proxyuser" / "proxy-secret");
                        no Proxy-Authorization: 407; wrong credentials: 401
                        (a tinyproxy 1.11 quirk)
======================= ============================================================

All proxies accept only loopback clients. dante's rules pass only loopback
targets (127.0.0.0/8, ::1); microsocks and tinyproxy
would connect anywhere, so point them at loopback only. SOCKS5 proxies accept
the IPv4, IPv6 and domain-name address types (both resolve "localhost";
CONNECT only, no BIND/UDP). A refused target port gives SOCKS reply 05
(connection refused) from dante.

Factories for special cases (call ``.stop()`` yourself or use ``proxy_factory``,
a function-scoped fixture that stops what it made):
``start_dante(auth=False)``, ``start_microsocks(username=None, password=None)``,
``start_tinyproxy(auth=None | (user, password), connect_ports=None | [ports])``
(with ``connect_ports`` tinyproxy refuses CONNECT to other ports with 403);
each also takes ``listen="::1"`` to listen on IPv6 loopback.

dante's username method checks the *system* password database (crypt of
/etc/shadow; no separate user file exists), so ``socks5_auth_proxy`` creates, once
per machine and idempotently, the locked-shell system user ``smtpcsocks`` with
password ``SOCKS_PASSWORD`` (needs root; the user is left in place because
parallel test processes share it). Without root the fixture skips.

Traps: danted needs ``external:`` to be the loopback address for the targets,
and its rules must use ``0/0`` (any family), not ``0.0.0.0/0``, or IPv6 clients
are silently reset;
tinyproxy switches to User nobody, so its log dir is chowned to nobody;
microsocks has no log; none of them daemonize here (foreground children of the
test process in their own session, stopped TERM then KILL, and killed by a
watchdog if pytest dies: PR_SET_PDEATHSIG would not survive their user switch).
"""
import os
import pwd
import time
from dataclasses import dataclass, field

import pytest

from .util import (free_port, make_tempdir, read_log, remove_tree, require, run, shared_instance,
                   start_process, stop_process, wait_for_port)

SOCKS_USER = "smtpcsocks"
SOCKS_PASSWORD = "socks-secret"
MICROSOCKS_USER = "smtpc-user"
MICROSOCKS_PASSWORD = "smtpc-pass w:rd"
HTTP_USER = "proxyuser"
HTTP_PASSWORD = "proxy-secret"


@dataclass
class Proxy:
    kind: str              # "socks5" or "http"
    host: str
    port: int
    username: str = None
    password: str = None
    proc: object = field(default=None, repr=False)
    dir: str = field(default=None, repr=False)
    logfile: str = field(default=None, repr=False)
    impl: str = ""          # dante / microsocks / tinyproxy

    @property
    def url(self):
        from urllib.parse import quote
        cred = ""
        if self.username is not None:
            cred = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return f"{self.kind}://{cred}{self.host}:{self.port}"

    def log(self):
        return read_log(self.logfile, limit=1 << 20) if self.logfile else ""

    def stop(self):
        stop_process(self.proc)
        if self.dir:
            remove_tree(self.dir)


PACKAGES = {"dante": ("/usr/sbin/danted", "dante-server"),
            "microsocks": ("/usr/bin/microsocks", "microsocks"),
            "tinyproxy": ("/usr/bin/tinyproxy", "tinyproxy")}


def _start(kind, impl, make_argv, listen="127.0.0.1", username=None, password=None, owner=None):
    require(*PACKAGES[impl])
    d = make_tempdir(impl)
    if owner:
        os.chown(d, owner.pw_uid, owner.pw_gid)
    log = os.path.join(d, f"{impl}.log")
    for _ in range(3):
        port = free_port(listen)
        argv = make_argv(d, port, log)
        proc = start_process(argv, log=log if impl == "microsocks" else os.path.join(d, "stdout"))
        try:
            wait_for_port(port, listen, timeout=20, proc=proc, what=impl,
                          log=log if os.path.exists(log) else os.path.join(d, "stdout"))
            return Proxy(kind, listen, port, username, password, proc, d, log, impl)
        except RuntimeError:  # lost the port to someone else: retry
            stop_process(proc)
        except BaseException:
            stop_process(proc)
            remove_tree(d)
            raise
    msg = read_log(os.path.join(d, "stdout")) + read_log(log)
    remove_tree(d)
    raise RuntimeError(f"{impl} did not start\n{msg}")


# -- dante ---------------------------------------------------------------------
def ensure_socks_user():
    """Create (idempotently) the system user dante's username method checks."""
    if os.geteuid() != 0:
        pytest.skip("dante username auth needs a system user: run as root")
    try:
        pwd.getpwnam(SOCKS_USER)
    except KeyError:
        r = run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 SOCKS_USER], check=False)
        if r.returncode not in (0, 9):  # 9: already exists (a parallel test made it)
            raise RuntimeError(r.stderr.decode())
    for _ in range(10):  # chpasswd takes /etc/shadow's lock; parallel runs may collide
        r = run(["chpasswd"], input=f"{SOCKS_USER}:{SOCKS_PASSWORD}\n".encode(), check=False)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"chpasswd failed: {r.stderr.decode()}")


def start_dante(auth=False, listen="127.0.0.1"):
    if auth:
        ensure_socks_user()

    def argv(d, port, log):
        conf = os.path.join(d, "danted.conf")
        method = "username" if auth else "none"
        with open(conf, "w") as f:
            f.write(f"""\
logoutput: {log}
internal: {listen} port = {port}
external: 127.0.0.1
external: ::1
external.rotation: route
clientmethod: none
socksmethod: {method}
user.privileged: root
user.unprivileged: nobody
client pass {{
    from: 127.0.0.0/8 to: 0/0
    log: error
}}
client pass {{
    from: ::1/128 to: 0/0
    log: error
}}
socks pass {{
    from: 0/0 to: 127.0.0.0/8
    command: connect
    log: error connect
}}
socks pass {{
    from: 0/0 to: ::1/128
    command: connect
    log: error connect
}}
socks block {{
    from: 0/0 to: 0/0
    log: error connect
}}
""")
        return ["/usr/sbin/danted", "-f", conf, "-p", os.path.join(d, "danted.pid"), "-N", "1"]

    return _start("socks5", "dante", argv, listen,
                  SOCKS_USER if auth else None, SOCKS_PASSWORD if auth else None)


# -- microsocks ------------------------------------------------------------------
def start_microsocks(username=None, password=None, listen="127.0.0.1"):
    def argv(d, port, log):
        a = ["/usr/bin/microsocks", "-i", listen, "-p", str(port)]
        if username is not None:
            a += ["-u", username, "-P", password]
        return a

    return _start("socks5", "microsocks", argv, listen, username, password)


# -- tinyproxy -----------------------------------------------------------------
def start_tinyproxy(auth=None, connect_ports=None, listen="127.0.0.1"):
    nobody = pwd.getpwnam("nobody")

    def argv(d, port, log):
        conf = os.path.join(d, "tinyproxy.conf")
        lines = [
            "User nobody", "Group nogroup", f"Port {port}", f"Listen {listen}", "Timeout 600",
            f'LogFile "{log}"', "LogLevel Info", "MaxClients 100",
            "Allow 127.0.0.1", "Allow ::1", "DisableViaHeader Yes",
        ]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        for p in connect_ports or ():
            lines.append(f"ConnectPort {p}")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return ["/usr/bin/tinyproxy", "-d", "-c", conf]

    return _start("http", "tinyproxy", argv, listen,
                  auth[0] if auth else None, auth[1] if auth else None,
                  owner=nobody if os.geteuid() == 0 else None)


# -- fixtures --------------------------------------------------------------------
def _session(key, starter):
    @pytest.fixture(scope="session")
    def fixture():
        with shared_instance(key, starter, Proxy.stop) as p:
            yield p
    fixture.__name__ = key
    return fixture


socks5_proxy = _session("socks5_proxy", lambda: start_dante())
socks5_auth_proxy = _session("socks5_auth_proxy", lambda: start_dante(auth=True))
microsocks_proxy = _session("microsocks_proxy", lambda: start_microsocks())
microsocks_auth_proxy = _session("microsocks_auth_proxy",
                                 lambda: start_microsocks(MICROSOCKS_USER, MICROSOCKS_PASSWORD))
http_proxy = _session("http_proxy", lambda: start_tinyproxy())
http_auth_proxy = _session("http_auth_proxy", lambda: start_tinyproxy(auth=(HTTP_USER, HTTP_PASSWORD)))


@pytest.fixture
def proxy_factory():
    """proxy_factory(start_tinyproxy, connect_ports=[25]) -> Proxy, stopped after the test."""
    made = []

    def make(starter, *a, **kw):
        p = starter(*a, **kw)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.stop()

