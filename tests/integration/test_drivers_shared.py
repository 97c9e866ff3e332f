"""One table of protocol cases, run through BOTH drivers: the blocking session
(smtpc_session_send_mem) and the non-blocking smtpc_bulk, via drv_shared.c.

Each case is a scripted (hostile) server dialogue, or a real server
(aiosmtpd, the private Postfix), and ONE expected outcome that both drivers
must produce: status class (sent / failed / unknown / canceled), error class
and code, the deciding reply code, accepted recipients and, where the API has
them, per-recipient codes. Server-side checks look at the bytes the server
received (no body after a refusal, dot-stuffing and CRLF on the wire, QUIT).

Differences between the drivers are never papered over:
  * a bug in one driver: the case is xfail(strict=True) for that driver
    (``Case.xfail``), with the reason;
  * a missing bulk API feature or a wrong detail (one field): the field is
    left out of the main test and checked by ``test_known_gap`` which is
    xfail(strict=True) (``Case.gaps``), so the rest of the case still runs;
  * a deliberate difference by design is normalised, with a comment saying
    why (see ``DELIBERATE``).

There is none of the first two now: an XPASS would mean a driver was fixed,
a new xfail or gap entry that one broke.

Adding a case: append a ``Case`` to ``CASES`` (see docs/TESTING.md).
"""
import dataclasses
import re
import subprocess

import pytest

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.certs import certs  # noqa: F401 (needed by postfix_server)
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import ScriptedServer

DRIVERS = ("session", "bulk")

# DELIBERATE: the differences between the drivers by design, normalised here
# (both drivers run every command and reply through the same engine and open
# connections with the same opener, so nothing else may differ):
#  * bulk retries a message whose connection was lost before its final dot
#    on another connection (max_attempts, default 3); drv_shared sets
#    max_attempts 1 so the loss is reported like the session reports it.
#  * bulk opens a new connection after a connection fails before EHLO is
#    done (421/554 greeting, no greeting, refused EHLO) or right after it,
#    before any transaction reply (a 421 behind the EHLO reply), up to
#    2*k+4 consecutive failures, before failing the message: it sends to one
#    server over many connections, and one bad connection says little; the
#    session reports the first. The server therefore accepts several
#    connections (``conns``) and each gets the same script; the outcome
#    compared is the message's.

# smtpc_error_class values (include/smtpc/errors.h)
OK, TRANSIENT, PERMANENT, CANCELED, CONFIG, PROTOCOL, UNKNOWN = range(7)

BODY = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: shared\r\n\r\nhello\r\n"


# ---- the driver ------------------------------------------------------------------

@dataclasses.dataclass
class Out:
    status: str
    error: str
    klass: int
    code: int
    accepted: int
    rcpts: list      # [(errname, code)] or None when the driver has none
    conns: int
    attempts: int
    ms: int
    rss_kb: int
    errmsg: str
    raw: str


def run_driver(drv, port, tmp_path, body=BODY, rcpts=("a@example.org",), args=(), host="127.0.0.1",
               timeout=180):
    f = tmp_path / f"body-{drv}"
    f.write_bytes(body)
    cmd = [driver("shared"), drv, host, str(port), "--file", str(f)]
    for r in rcpts:
        cmd += ["--to", r]
    # generous: a scripted dialogue that goes wrong should fail, not hang
    base = {"--greeting-timeout-ms": "20000", "--command-timeout-ms": "20000",
            "--data-timeout-ms": "20000"}
    args = list(args)
    for k, v in base.items():
        if k not in args:
            cmd += [k, v]
    cmd += args
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, p.stderr.decode(errors="replace") + out
    kv, rc = {}, []
    have_rcpts = False
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if k == "rcpt":
            _, name, code = v.split()
            rc.append((name, int(code)))
        elif k == "rcpt_codes":
            have_rcpts = v == "1"
        else:
            kv[k] = v
    assert "results" not in kv, f"bulk reported {kv['results']} results for one message:\n{out}"
    return Out(status=kv["status"], error=kv["error"], klass=int(kv["class"]), code=int(kv["code"]),
               accepted=int(kv["accepted"]), rcpts=rc if have_rcpts else None,
               conns=int(kv["conns"]), attempts=int(kv["attempts"]), ms=int(kv["ms"]),
               rss_kb=int(kv["peak_rss_kb"]), errmsg=kv.get("errmsg", ""), raw=out)


# ---- script building blocks --------------------------------------------------------

GREETING = ("send", b"220 scripted ESMTP\r\n")


def ehlo(*caps, pipelining=True):
    lines = [b"scripted.example"] + ([b"PIPELINING"] if pipelining else []) + list(caps)
    reply = b"".join(b"250-" + l + b"\r\n" for l in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
    return [("expect", rb"^EHLO shared\.test$"), ("send", reply)]


def envelope(rcpts=("a@example.org",), size=None):
    """The lines of MAIL [SIZE=size], RCPT..., DATA (pipelined: read before any reply)."""
    sz = b"" if size is None else b" SIZE=%d" % size
    return ([("expect", rb"^MAIL FROM:<sender@example\.org>" + sz + b"$")] +
            [("expect", rb"^RCPT TO:<" + re.escape(r.encode()) + rb">$") for r in rcpts] +
            [("expect", rb"^DATA$")])


def lockstep(replies, rcpts=("a@example.org",)):
    """Without PIPELINING: each command, then its reply; stops after the
    first reply that ends the envelope (a refusal, or 354)."""
    cmds = envelope(rcpts)
    steps = []
    for c, r in zip(cmds, replies):
        steps += [c, ("send", r)]
    return steps


QUIT = [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"), ("close",)]
RSET = [("expect", rb"^RSET$"), ("send", b"250 reset\r\n")]

def first_conn(srv):
    """What the client sent on the first connection (the message's)."""
    b = bytes(srv.received)
    return b[:srv.starts[1]] if len(srv.starts) > 1 else b


def sent_after(srv, marker):
    """What the client sent on the first connection after its first `marker`."""
    b = first_conn(srv)
    i = b.find(marker)
    assert i >= 0, (marker, b[:500])
    return b[i + len(marker):]


VERB = re.compile(rb"^(EHLO|HELO|MAIL|RCPT|DATA|RSET|QUIT|NOOP)\b")


def commands(srv, all_conns=False):
    """The client's command lines on the first connection (all_conns: on
    all), message bodies left out (a body starts after DATA with a line that
    is no command, and ends at its "." line; the bodies of this file start
    with a header)."""
    out, in_body = [], False
    lines = (bytes(srv.received) if all_conns else first_conn(srv)).split(b"\r\n")
    for i, l in enumerate(lines):
        if in_body:
            in_body = l != b"."
        elif VERB.match(l):
            out.append(l)
            if l == b"DATA" and i + 1 < len(lines) and lines[i + 1] and not VERB.match(lines[i + 1]):
                in_body = True
    return out


# ---- the case table ------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    id: str
    script: object            # steps, or a function drv -> steps
    expect: dict              # fields of Out that both drivers must produce
    check: object = None      # check(srv, out, drv): server-side assertions
    body: bytes = BODY
    rcpts: tuple = ("a@example.org",)
    args: tuple = ()
    xfail: dict = dataclasses.field(default_factory=dict)  # drv -> reason (whole case)
    gaps: dict = dataclasses.field(default_factory=dict)   # drv -> {field or (fields): reason}
    later: object = None      # steps for the 2nd, 3rd ... connection (default: script)
    conns: dict = dataclasses.field(default_factory=dict)  # drv -> connections (default 1)

    def scripts(self, drv):
        first = self.script(drv) if callable(self.script) else self.script
        return [first] if self.later is None else [first, self.later]


def no_body(srv, out, drv):
    assert b"Subject: shared" not in bytes(srv.received), "body bytes after a refusal"
    assert srv.messages == []


def quit_seen(srv, out, drv):
    assert commands(srv)[-1:] == [b"QUIT"], commands(srv)


def delivered(srv, out, drv):
    assert srv.messages == [BODY]
    quit_seen(srv, out, drv)


def pipelined_group(srv, out, drv):
    """MAIL, RCPT and DATA went in one write (one chunk on loopback)."""
    assert any(b"MAIL FROM" in c and c.endswith(b"DATA\r\n") for c in srv.chunks), srv.chunks


def refusal_checks(*, rset):
    def check(srv, out, drv):
        no_body(srv, out, drv)
        quit_seen(srv, out, drv)
        assert (b"RSET" in commands(srv)) == rset, commands(srv)
    return check


# After a refused transaction both drivers' engine ends it with RSET (none
# is due when nothing was accepted without PIPELINING), then QUIT.
REFUSED_TAIL = RSET + QUIT


SENT_1 = dict(status="sent", error="SMTPC_OK", klass=OK, code=250, accepted=1,
              rcpts=[("SMTPC_OK", 250)])

HAPPY_PIPE = [GREETING] + ehlo() + envelope() + [
    ("send", b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"), ("expect_data",),
    ("send", b"250 2.0.0 queued\r\n")] + QUIT


def _happy_nopipe_check(srv, out, drv):
    delivered(srv, out, drv)
    mail = [c for c in srv.chunks if b"MAIL FROM" in c]
    assert mail and b"RCPT" not in mail[0], srv.chunks  # waited for MAIL's reply


EHLO_ODD = [("expect", rb"^EHLO shared\.test$"), ("send",
            b"250-scripted.example   Hello  [127.0.0.1]  \r\n"
            b"250-  pipelining  \r\n"
            b"250-SIZE   100000000\r\n"
            b"250-AUTH=LOGIN PLAIN\r\n"
            b"250-X-UNKNOWN-EXT   a  b   c\r\n"
            b"250 help\r\n")]


def _dots_body():
    return (b"Subject: shared\r\n\r\n"
            b".\r\n"                       # a lone dot line
            b"..two dots\r\n"
            b".x\r\n"
            b"bare CR\rbare LF\nmixed\n\r"   # bare CR / LF / LF CR
            b"smuggle 1\r\n.\r\nMAIL FROM:<evil@x>\r\n"
            b"smuggle 2\n.\nRCPT TO:<evil@x>\n"
            b"smuggle 3\r.\rDATA\r"
            b"smuggle 4\n.\r\nX\r\n"
            b"smuggle 5\r\n.\nY\r\n"
            b"last line . without end\r\n.")   # ends with a lone dot, no CRLF


def body_lines(body):
    lines = re.split(rb"\r\n|\r|\n", body)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def wire_form(body):
    """What RFC 5321 wants on the wire for body (CR, LF and CRLF each one
    CRLF; leading dots doubled; a final CRLF), without the final dot."""
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in body_lines(body))


def _dots_check(srv, out, drv):
    body = _dots_body()
    after = sent_after(srv, b"DATA\r\n")
    want = wire_form(body)
    # the first end-of-data marker is the real one: nothing in the body ended DATA
    end = (b"\r\n" + after).find(b"\r\n.\r\n")
    assert end == len(want), (end, len(want))
    assert after[:len(want)] == want
    assert after[len(want):len(want) + 3] == b".\r\n"
    assert b"\r" not in after[:len(want)].replace(b"\r\n", b"")  # no bare CR
    assert b"\n" not in after[:len(want)].replace(b"\r\n", b"")  # no bare LF
    assert commands(srv)[-1:] == [b"QUIT"] and b"evil" not in b"".join(commands(srv))
    assert srv.messages == [b"".join(l + b"\r\n" for l in body_lines(body))]
    quit_seen(srv, out, drv)


EIGHT_BIT = "Subject: 8bit\r\n\r\nZoë – ünïcödé\r\n".encode() + b"latin-1 \xe9\xff raw\r\n"


def _eightbit_check(srv, out, drv):
    assert srv.messages == [EIGHT_BIT]  # unchanged: not re-encoded, not refused
    mail = [c for c in commands(srv) if c.startswith(b"MAIL")]
    assert mail == [b"MAIL FROM:<sender@example.org>"], mail  # no BODY=8BITMIME to this server
    quit_seen(srv, out, drv)


BIG = b"Subject: shared\r\n\r\n" + b"y" * 78 + b"\r\n"
BIG = BIG * (1000 // len(BIG) + 1)  # > the 100 octets the server's SIZE allows


def _size_after_dot_check(srv, out, drv):
    mail = [c for c in commands(srv) if c.startswith(b"MAIL")]
    assert mail == [b"MAIL FROM:<sender@example.org>"]  # no SIZE= (length not known)
    assert len(srv.messages) == 1  # the whole body went, then 552
    quit_seen(srv, out, drv)


# What a server does with a message over its SIZE: 552 at MAIL when SIZE=
# says so, else 552 after the dot. A client that knows the length refuses
# before sending anything (both know the length of a body in memory: the
# session is given it, as smtpc_client does, bulk takes it) and just QUITs.
SIZE_DECLARED = [GREETING] + ehlo(b"SIZE 100") + QUIT


def _size_declared_check(srv, out, drv):
    assert [c for c in commands(srv) if c.startswith((b"MAIL", b"DATA"))] == []
    assert srv.messages == []
    quit_seen(srv, out, drv)


def _greeting_check(srv, out, drv):
    # nothing but (at most) QUIT after a refusing greeting; never EHLO
    assert all(c == b"QUIT" for c in commands(srv, all_conns=True)), commands(srv, True)
    assert b"MAIL" not in bytes(srv.received)


def _no_greeting_check(srv, out, drv):
    assert bytes(srv.received) == b""   # the client waits for the greeting
    per_conn = 500
    # the timeout fires at the set value on each connection (bulk makes
    # several, see DELIBERATE), not later (10 ms each: millisecond clocks)
    assert (per_conn - 10) * out.conns <= out.ms < (per_conn + 3000) * out.conns, out


def _close_in_body_check(srv, out, drv):
    assert srv.messages == []  # no final dot ever arrived
    assert b"\r\n.\r\n" not in sent_after(srv, b"DATA\r\n")


def _after_dot_check(srv, out, drv):
    assert srv.messages == [BODY]
    assert b"QUIT" not in commands(srv)  # the connection was gone


def _bounded(limit_kb):
    # The floods are ~30 MiB; a client keeping what it reads would exceed the
    # limit (which leaves room for an ASan build's ~13 MB baseline).
    def check(srv, out, drv):
        assert 0 < out.rss_kb < limit_kb, out.rss_kb
        assert srv.messages == []
    return check


def _protocol_error_check(srv, out, drv):
    # the connection is dropped at the violation: nothing more is sent
    assert srv.messages == []
    assert b"QUIT" not in commands(srv)
    assert b"Subject: shared" not in bytes(srv.received)
    assert len(srv.starts) == 1 or bytes(srv.received)[srv.starts[1]:] == b"EHLO shared.test\r\nQUIT\r\n"


def _chunky_body():
    """400 KB whose awkward bytes sit on the drivers' read/encode boundaries
    (multiples of 16 KiB and 64 KiB): a CRLF split in two, a bare CR or LF
    just before a line starting with ".", "<CRLF>.<CRLF>" straddling one,
    CR CR LF."""
    b = bytearray(b"Subject: chunks\r\n\r\n" + (b"y" * 60 + b"\r\n") * 6500)
    for off, seq in ((65535, b"\r\n"), (131071, b"\r."), (196607, b"\n."),
                     (262142, b"\r\n.\r\n"), (327679, b"\r\r\n"), (344063, b"\r\n.."),
                     (360447, b"\n\r.")):
        b[off:off + len(seq)] = seq
    return bytes(b)


def _wire_check(body):
    def check(srv, out, drv):
        after = sent_after(srv, b"DATA\r\n")
        want = wire_form(body)
        assert (b"\r\n" + after).find(b"\r\n.\r\n") == len(want)  # nothing ended DATA early
        assert after[:len(want)] == want
        assert srv.messages == [b"".join(l + b"\r\n" for l in body_lines(body))]
        quit_seen(srv, out, drv)
    return check


def _aborted_body_check(srv, out, drv):
    # a body that cannot be sent is aborted by closing: never a final dot
    assert srv.messages == []
    assert b"\r\n.\r\n" not in sent_after(srv, b"DATA\r\n")
    assert b"QUIT" not in commands(srv)


def _abandon_check(srv, out, drv):
    # MAIL refused, yet RCPT accepted and DATA answered 354: any end of data
    # (even an empty one) would deliver to the accepted recipient, and RSET
    # or QUIT would be message text. Only closing is safe.
    assert sent_after(srv, b"DATA\r\n") == b"", sent_after(srv, b"DATA\r\n")
    assert srv.closed_by_client


def _timing(lo, hi):
    def check(srv, out, drv):
        assert lo <= out.ms < hi, out.ms
    return check


SLOW = 0.002
# bulk: connections tried before the message fails when none gets past EHLO (2*k+4, k=1)
BULK_CONN_TRIES = 6
THREE = ("a@example.org", "b@example.org", "c@example.org")
AUTH_ARGS = ("--user", "alice", "--pass", "secret", "--plain-auth")
AUTH_PLAIN = ("expect", rb"^AUTH PLAIN AGFsaWNlAHNlY3JldA==$")  # SASL-IR of alice / secret
# after a failed opening the client QUITs without waiting for the 221
QUIT_AND_GO = [("expect", rb"^QUIT$")]

def _assert(cond, msg=""):
    assert cond, msg


CASES = [
    Case("happy_pipelining", HAPPY_PIPE, SENT_1,
         check=lambda s, o, d: (delivered(s, o, d), pipelined_group(s, o, d))),
    Case("happy_no_pipelining",
         [GREETING] + ehlo(b"8BITMIME", pipelining=False) +
         lockstep([b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"]) +
         [("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, check=_happy_nopipe_check),
    # (SIZE is offered: both declare the length of a body in memory)
    Case("ehlo_multiline_odd_spacing",
         [GREETING] + EHLO_ODD + envelope(size=len(BODY)) +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 ok\r\n")] + QUIT,
         SENT_1, check=lambda s, o, d: (delivered(s, o, d), pipelined_group(s, o, d))),
    Case("mail_4xx",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"451 4.7.1 try later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 no recipients\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=451, accepted=0,
              rcpts=[("SMTPC_EPERMFAIL", 503)]),
         check=refusal_checks(rset=True)),
    Case("mail_5xx",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"553 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 no recipients\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=553, accepted=0,
              rcpts=[("SMTPC_EPERMFAIL", 503)]),
         check=refusal_checks(rset=True)),
    Case("mail_5xx_no_pipelining",
         [GREETING] + ehlo(b"HELP", pipelining=False) + lockstep([b"553 5.7.1 sender refused\r\n"]) + QUIT,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=553, accepted=0,
              rcpts=[("SMTPC_EUNKNOWN", 0)]),
         check=refusal_checks(rset=False)),
    Case("rcpt_one_of_three_refused",
         [GREETING] + ehlo() + envelope(THREE) +
         [("send", b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go\r\n"),
          ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         dict(status="sent", error="SMTPC_OK", klass=OK, code=250, accepted=2,
              rcpts=[("SMTPC_OK", 250), ("SMTPC_EPERMFAIL", 550), ("SMTPC_OK", 250)]),
         rcpts=THREE, check=delivered),
    Case("rcpt_all_refused_data_554",
         [GREETING] + ehlo() + envelope(THREE) +
                   [("send", b"250 ok\r\n550 5.1.1 no\r\n450 4.2.1 later\r\n550 5.1.1 no\r\n"
                             b"554 5.5.1 no valid recipients\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=550, accepted=0,
              rcpts=[("SMTPC_EPERMFAIL", 550), ("SMTPC_ETEMPFAIL", 450), ("SMTPC_EPERMFAIL", 550)]),
         rcpts=THREE, check=refusal_checks(rset=True)),
    Case("rcpt_all_refused_data_503",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"250 ok\r\n450 4.2.1 later\r\n503 5.5.1 no valid recipients\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=450, accepted=0,
              rcpts=[("SMTPC_ETEMPFAIL", 450)]),
         check=refusal_checks(rset=True)),
    # A broken server says 354 although no recipient was accepted: the only
    # way out of DATA is an end of data, which delivers to nobody.
    Case("rcpt_all_refused_data_354",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"250 ok\r\n550 5.1.1 no\r\n354 go ahead anyway\r\n"),
                    ("expect", rb"^\.$"), ("send", b"554 5.5.1 no valid recipients\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=550, accepted=0,
              rcpts=[("SMTPC_EPERMFAIL", 550)]),
         check=refusal_checks(rset=True)),
    Case("rcpt_all_refused_no_pipelining",
         [GREETING] + ehlo(b"HELP", pipelining=False) +
                   lockstep([b"250 ok\r\n", b"550 5.1.1 no\r\n"]) + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=550, accepted=0,
              rcpts=[("SMTPC_EPERMFAIL", 550)]),
         check=lambda s, o, d: (refusal_checks(rset=True)(s, o, d),
                                _assert(b"DATA" not in commands(s), commands(s)))),
    Case("data_4xx",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"250 ok\r\n250 ok\r\n451 4.3.0 not now\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=451, accepted=1,
              rcpts=[("SMTPC_OK", 250)]),
         check=refusal_checks(rset=True)),
    Case("data_5xx",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"250 ok\r\n250 ok\r\n554 5.3.0 no DATA for you\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=554, accepted=1,
              rcpts=[("SMTPC_OK", 250)]),
         check=refusal_checks(rset=True)),
    Case("dot_5xx",
         HAPPY_PIPE[:-4] + [("send", b"554 5.7.1 content refused\r\n")] + QUIT,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=554, accepted=1,
              rcpts=[("SMTPC_OK", 250)]),
         check=lambda s, o, d: (_assert(s.messages == [BODY], s.messages), quit_seen(s, o, d))),
    Case("greeting_421", [("send", b"421 4.3.2 too busy\r\n"), ("hang",)],
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=421, accepted=0),
         check=_greeting_check, conns={"bulk": BULK_CONN_TRIES}),
    Case("greeting_554", [("send", b"554 5.7.1 no service\r\n"), ("hang",)],
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=554, accepted=0),
         check=_greeting_check, conns={"bulk": BULK_CONN_TRIES}),
    Case("no_greeting", [("hang",)],
         dict(status="failed", error="SMTPC_ETIMEDOUT", klass=TRANSIENT, code=0, accepted=0),
         args=("--greeting-timeout-ms", "500"), check=_no_greeting_check,
         conns={"bulk": BULK_CONN_TRIES}),
    # 421 "closing" in answer to MAIL: the session reports the reply; bulk
    # reports it too (it would first retry the message elsewhere;
    # max_attempts 1 here).
    Case("mail_421",
         [GREETING] + ehlo() + envelope() + [("send", b"421 4.3.2 shutting down\r\n"), ("close",)],
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=421, accepted=0),
         check=lambda s, o, d: (no_body(s, o, d), _assert(b"QUIT" not in commands(s)))),
    # 16 MiB: more than the loopback socket buffers hold, so the client is
    # still writing the body when the server resets the connection.
    Case("close_during_body",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect", rb"^Subject"), ("sleep", 0.5), ("drop",)],
         dict(status="failed", klass=TRANSIENT, code=0),
         body=b"Subject: shared\r\n\r\n" + (b"z" * 78 + b"\r\n") * ((16 << 20) // 80),
         check=_close_in_body_check),
    Case("close_right_after_dot",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("close",)],
         dict(status="unknown", error="SMTPC_EUNKNOWN", klass=UNKNOWN, code=0, accepted=1),
         check=_after_dot_check),
    Case("drop_right_after_dot",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("drop",)],
         dict(status="unknown", error="SMTPC_EUNKNOWN", klass=UNKNOWN, code=0, accepted=1),
         check=_after_dot_check),
    # A reply line that never ends: 32 MiB streamed; the client gives up at
    # its line limit without holding the line.
    Case("reply_line_too_long",
         [GREETING] + ehlo() + envelope() + [("send", b"250 "), ("flood", b"x" * 65536, 512)],
         dict(status="failed", error="SMTPC_ELIMIT", klass=PROTOCOL, code=0, accepted=0),
         check=_bounded(24 * 1024)),
    Case("reply_continuation_flood",
         [GREETING] + ehlo() + envelope() + [("flood", b"250-more and more and more\r\n" * 1024, 1024)],
         dict(status="failed", error="SMTPC_ELIMIT", klass=PROTOCOL, code=0, accepted=0),
         check=_bounded(24 * 1024)),
    Case("malformed_code_letter",
         [GREETING] + ehlo() + envelope() + [("send", b"25O ok\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         check=_protocol_error_check),
    Case("malformed_code_no_separator",
         [GREETING] + ehlo() + envelope() + [("send", b"250ok\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         check=_protocol_error_check),
    Case("malformed_code_changes_midreply",
         [GREETING] + ehlo() + envelope() + [("send", b"250-ok\r\n251 ok\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         check=_protocol_error_check),
    Case("malformed_code_out_of_range",
         [GREETING] + ehlo() + envelope() + [("send", b"650 ok\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         check=_protocol_error_check),
    # Invalid enhanced status codes are text, not errors: the reply code decides.
    Case("invalid_enhanced_codes",
         [GREETING] + ehlo(b"ENHANCEDSTATUSCODES") + envelope(THREE) +
         [("send", b"250 9.9.9 ok\r\n250 2.1.5.7 ok\r\n550 2.1.1 wrong class\r\n250 2.1000.5 ok\r\n354 3.0.0 go\r\n"),
          ("expect_data",), ("send", b"250 5.0.0 queued\r\n")] + QUIT,
         dict(status="sent", error="SMTPC_OK", klass=OK, code=250, accepted=2,
              rcpts=[("SMTPC_OK", 250), ("SMTPC_EPERMFAIL", 550), ("SMTPC_OK", 250)]),
         rcpts=THREE, check=delivered),
    Case("replies_split_byte_by_byte",
         [("send_slowly", b"220 slow ESMTP\r\n", SLOW), ("expect", rb"^EHLO "),
          ("send_slowly", b"250-scripted.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", SLOW)] +
         envelope() + [("send_slowly", b"250 ok\r\n250 ok\r\n354 go\r\n", SLOW), ("expect_data",),
                       ("send_slowly", b"250 queued\r\n", SLOW)] + QUIT,
         SENT_1, check=delivered),
    Case("replies_bare_lf",
         [("send", b"220 lf ESMTP\n"), ("expect", rb"^EHLO "),
          ("send", b"250-scripted.example\n250-PIPELINING\n250 8BITMIME\n")] +
         envelope() + [("send", b"250 ok\n250 ok\n354 go\n"), ("expect_data",),
                       ("send", b"250 queued\n"), ("expect", rb"^QUIT$"), ("send", b"221 bye\n"), ("close",)],
         SENT_1, check=delivered),
    Case("body_dots_bare_cr_lf_smuggling",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, body=_dots_body(), check=_dots_check),
    # Neither driver looks at the body's bytes: 8-bit goes as it is, without
    # BODY=8BITMIME, also to a server that does not offer 8BITMIME (the MIME
    # writer / smtpc_client choose the encoding; the raw layers send bytes).
    Case("eightbit_body_without_8bitmime",
         [GREETING] + ehlo(b"HELP") + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, body=EIGHT_BIT, check=_eightbit_check),
    # SIZE smaller than the message, whose length is not known beforehand
    # (a read callback): nothing declared, both send it and report the 552.
    Case("size_over_limit_552_after_dot",
         [GREETING] + ehlo(b"SIZE 100") + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",),
          ("send", b"552 5.3.4 message too big\r\n")] + QUIT,
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=552, accepted=1,
              rcpts=[("SMTPC_OK", 250)]),
         body=BIG, args=("--piece", "4096"), check=_size_after_dot_check),
    # The length declared (a body in memory) is over the server's SIZE: both
    # refuse before sending anything.
    Case("size_over_limit_refused_before_sending", SIZE_DECLARED,
         dict(status="failed", error="SMTPC_ELIMIT", code=0, accepted=0),
         body=BIG, check=_size_declared_check),
    # Within the limit: SIZE=<length> on MAIL (RFC 1870), then delivered.
    Case("size_declared_within_limit",
         [GREETING] + ehlo(b"SIZE 100000") +
         [("expect", rb"^MAIL FROM:<sender@example\.org> SIZE=%d$" % len(BODY)),
          ("expect", rb"^RCPT TO:<a@example\.org>$"), ("expect", rb"^DATA$"),
          ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, check=delivered),
    Case("data_answered_250",
         [GREETING] + ehlo() + envelope() + [("send", b"250 ok\r\n250 ok\r\n250 ok\r\n")] + RSET + QUIT,
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=1),
         check=lambda s, o, d: (no_body(s, o, d), quit_seen(s, o, d))),
    Case("mail_answered_354",
         [GREETING] + ehlo() + envelope() +
                   [("send", b"354 what?\r\n503 5.5.1 need MAIL\r\n503 5.5.1 no recipients\r\n")] + REFUSED_TAIL,
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         check=refusal_checks(rset=True)),
    Case("dot_answered_354",
         HAPPY_PIPE[:-4] + [("send", b"354 what?\r\n")] + QUIT,
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=1),
         check=lambda s, o, d: (_assert(s.messages == [BODY]), quit_seen(s, o, d))),
    Case("refused_in_the_middle_of_body",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect", rb"^Subject"),
          ("send", b"552 5.3.4 message too big\r\n"), ("sleep", 0.3), ("close",)],
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=552, accepted=1),
         body=b"Subject: shared\r\n\r\n" + (b"z" * 78 + b"\r\n") * ((16 << 20) // 80),
         check=_close_in_body_check),
    # 421 to the final dot: not delivered; both report the reply (bulk would
    # first retry the message elsewhere; max_attempts 1 here).
    Case("dot_421",
         HAPPY_PIPE[:-4] + [("send", b"421 4.3.0 shutting down\r\n"), ("close",)],
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=421, accepted=1),
         check=lambda s, o, d: (_assert(s.messages == [BODY]), _assert(b"QUIT" not in commands(s)))),
    Case("malformed_nul_in_reply",
         [GREETING] + ehlo() + envelope() + [("send", b"250 o\x00k\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         check=_protocol_error_check),
    Case("no_reply_to_mail",
         [GREETING] + ehlo() + envelope() + [("hang",)],
         dict(status="failed", error="SMTPC_ETIMEDOUT", klass=TRANSIENT, code=0, accepted=0),
         args=("--command-timeout-ms", "500"),          check=lambda s, o, d: (no_body(s, o, d), _timing(490, 4000)(s, o, d))),
    Case("greeting_multiline_and_code_only_replies",
         [("send", b"220-scripted ESMTP\r\n220-more greeting\r\n220\r\n"), ("expect", rb"^EHLO "),
          ("send", b"250-scripted.example\r\n250 PIPELINING\r\n")] + envelope() +
         [("send", b"250\r\n250\r\n354\r\n"), ("expect_data",), ("send", b"250\r\n")] + QUIT,
         SENT_1, check=delivered),
    Case("body_across_read_boundaries",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, body=_chunky_body(), check=_wire_check(_chunky_body())),
    # The same bodies through a read callback (bulk's m->read instead of its
    # in-memory fast path; the session's smtpc_session_send), one byte at a
    # time and in odd pieces: every boundary falls somewhere awkward.
    Case("body_dots_read_cb_1_byte",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, body=_dots_body(), args=("--piece", "1"), check=_dots_check),
    Case("body_across_read_boundaries_read_cb",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, body=_chunky_body(), args=("--piece", "4099"), check=_wire_check(_chunky_body())),
    Case("body_line_too_long_read_cb",
         [GREETING] + ehlo() + envelope() + [("send", b"250 ok\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_ELIMIT", code=0, accepted=1),
         body=b"Subject: shared\r\n\r\n" + b"a" * 999 + b"\r\nmore\r\n", args=("--piece", "100"),
         check=_aborted_body_check),
    Case("empty_body",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect", rb"^\.$"), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, body=b"",
         check=lambda s, o, d: (_assert(sent_after(s, b"DATA\r\n").startswith(b".\r\nQUIT")), quit_seen(s, o, d))),
    # 999 octets on one line (RFC 5321 allows 998): the body is aborted.
    Case("body_line_too_long",
         [GREETING] + ehlo() + envelope() + [("send", b"250 ok\r\n250 ok\r\n354 go\r\n")],
         dict(status="failed", error="SMTPC_ELIMIT", code=0, accepted=1),
         body=b"Subject: shared\r\n\r\n" + b"a" * 999 + b"\r\nmore\r\n",
         check=_aborted_body_check),
    Case("no_reply_after_dot",
         [GREETING] + ehlo() + envelope() +
         [("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("hang",)],
         dict(status="unknown", error="SMTPC_EUNKNOWN", klass=UNKNOWN, code=0, accepted=1),
         args=("--data-timeout-ms", "500"), check=_timing(490, 4000)),
    Case("ehlo_554",
         [GREETING, ("expect", rb"^EHLO shared\.test$"), ("send", b"554 5.7.1 go away\r\n"), ("hang",)],
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=554, accepted=0),
         args=("--command-timeout-ms", "1000"), conns={"bulk": BULK_CONN_TRIES},
         check=lambda s, o, d: _assert(b"HELO" not in commands(s, all_conns=True), commands(s, True))),
    Case("ehlo_502_helo_fallback",
         [GREETING, ("expect", rb"^EHLO shared\.test$"), ("send", b"502 5.5.2 what?\r\n"),
          ("expect", rb"^HELO shared\.test$"), ("send", b"250 scripted.example\r\n")] +
         lockstep([b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"]) +
         [("expect_data",), ("send", b"250 queued\r\n")] + QUIT,
         SENT_1, check=delivered),
    Case("mail_refused_rcpt_accepted_354",
         [GREETING] + ehlo() + envelope() +
         [("send", b"553 5.7.1 sender refused\r\n250 2.1.5 ok\r\n354 go\r\n"), ("hang",)],
         dict(status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=553, accepted=1,
              rcpts=[("SMTPC_OK", 250)]),
         args=("--data-timeout-ms", "1000", "--command-timeout-ms", "1000"), check=_abandon_check),
    # 421 right behind the EHLO reply (one read): the session fails the
    # transaction with the 421; bulk must not reconnect without bound.
    Case("ehlo_then_421",
         [GREETING, ("expect", rb"^EHLO "),
          ("send", b"250-scripted.example\r\n250 PIPELINING\r\n421 4.7.0 too many connections\r\n"),
          ("close",)],
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=421, accepted=0),
         args=("--greeting-timeout-ms", "1000"), conns={"bulk": (1, BULK_CONN_TRIES)},
         check=lambda s, o, d: no_body(s, o, d)),
    # The opening through the shared opener: the same policy, codes and
    # commands from both drivers. AUTH refused (5xx) is SMTPC_EAUTH with the
    # refusal, then a polite QUIT; bulk gives the run up at once (every
    # connection would be refused).
    Case("auth_refused_535",
         [GREETING] + ehlo(b"AUTH PLAIN") + [AUTH_PLAIN, ("send", b"535 5.7.8 authentication failed\r\n")] + QUIT_AND_GO,
         dict(status="failed", error="SMTPC_EAUTH", klass=CONFIG, code=535, accepted=0),
         args=AUTH_ARGS, check=lambda s, o, d: (no_body(s, o, d), quit_seen(s, o, d),
                                                 _assert(b"MAIL" not in bytes(s.received)))),
    # AUTH refused for now (4xx): temporary; bulk tries other connections
    # (DELIBERATE), each refused the same way.
    Case("auth_refused_454",
         [GREETING] + ehlo(b"AUTH PLAIN") + [AUTH_PLAIN, ("send", b"454 4.7.0 try again later\r\n")] + QUIT_AND_GO,
         dict(status="failed", error="SMTPC_ETEMPFAIL", klass=TRANSIENT, code=454, accepted=0),
         args=AUTH_ARGS, conns={"bulk": BULK_CONN_TRIES},
         check=lambda s, o, d: (no_body(s, o, d), _assert(b"MAIL" not in bytes(s.received)))),
    # Credentials never go in clear unless allowed: refused before AUTH.
    Case("auth_refused_in_cleartext",
         [GREETING] + ehlo(b"AUTH PLAIN") + QUIT_AND_GO,
         dict(status="failed", error="SMTPC_EAUTH", klass=CONFIG, code=0, accepted=0),
         args=AUTH_ARGS[:-1],
         check=lambda s, o, d: _assert(commands(s) == [b"EHLO shared.test", b"QUIT"], commands(s))),
    # TLS required (starttls) and STARTTLS not offered: nothing more is sent.
    Case("starttls_required_not_offered",
         [GREETING] + ehlo(b"AUTH PLAIN") + [("hang",)],
         dict(status="failed", error="SMTPC_ETLS", klass=CONFIG, code=0, accepted=0),
         args=("--tls", "starttls"),
         check=lambda s, o, d: _assert(commands(s) == [b"EHLO shared.test"], commands(s))),
    Case("unsolicited_reply_after_ehlo",
         [GREETING, ("expect", rb"^EHLO "),
          ("send", b"250-scripted.example\r\n250 PIPELINING\r\n250 surprise\r\n"), ("hang",)],
         dict(status="failed", error="SMTPC_EPROTO", klass=PROTOCOL, code=0, accepted=0),
         args=("--greeting-timeout-ms", "1000"), conns={"bulk": (1, BULK_CONN_TRIES)},
         check=lambda s, o, d: no_body(s, o, d)),
]


def _params():
    out = []
    for c in CASES:
        for d in DRIVERS:
            marks = [pytest.mark.xfail(strict=True, reason=c.xfail[d])] if d in c.xfail else []
            out.append(pytest.param(c, d, id=f"{c.id}-{d}", marks=marks))
    return out


def _fields(key):
    return key if isinstance(key, tuple) else (key,)


def _gap_params():
    out = []
    for c in CASES:
        for d, fields in c.gaps.items():
            for f, why in fields.items():
                out.append(pytest.param(c, d, f, id=f"{c.id}-{d}-{'+'.join(_fields(f))}",
                                        marks=pytest.mark.xfail(strict=True, reason=why)))
    return out


def check_outcome(case, drv, out, skip=()):
    skip = set(skip)
    # both drivers give per-recipient results (bulk: smtpc_bulk_result.rcpt_codes)
    assert out.rcpts is not None, out.raw
    got = {k: (out.rcpts if k == "rcpts" else getattr(out, k)) for k in case.expect if k not in skip}
    want = {k: v for k, v in case.expect.items() if k not in skip}
    assert got == want, out.raw


class _PerConnection(ScriptedServer):
    """The scripted server with one script per connection: scripts[0] for
    the first, scripts[1] for every later one (when given)."""

    def __init__(self, scripts, **kw):
        self.scripts = scripts
        self.starts = []  # where each connection's bytes begin in received
        super().__init__(scripts[0], **kw)

    def _play(self, c):
        with self.lock:
            self.starts.append(len(self.received))
        self.steps = list(self.scripts[min(self.connections, len(self.scripts)) - 1])
        return super()._play(c)


@pytest.fixture
def server():
    servers = []

    def start(scripts):
        # up to 20 connections: bulk reconnects (DELIBERATE); once the driver
        # is done the server is told how many there were, so that wait()
        # returns when it has played them all
        s = _PerConnection(scripts, connections=20)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


_results = {}


def run_case(case, drv, server, tmp_path):
    srv = server(case.scripts(drv))
    out = run_driver(drv, srv.port, tmp_path, body=case.body, rcpts=case.rcpts, args=case.args)
    srv.max_connections = max(out.conns, 1)
    assert srv.wait(60), "the scripted server did not finish"
    _results[(case.id, drv)] = out
    return srv, out


@pytest.mark.parametrize("case,drv", _params())
def test_scripted_case(case, drv, server, tmp_path):
    srv, out = run_case(case, drv, server, tmp_path)
    check_outcome(case, drv, out, skip=[f for k in case.gaps.get(drv, {}) for f in _fields(k)])
    assert srv.errors == [], srv.errors  # every connection followed its script
    conns = case.conns.get(drv, 1)
    lo, hi = conns if isinstance(conns, tuple) else (conns, conns)
    assert lo <= out.conns <= hi, out.raw
    assert srv.connections == out.conns
    if case.check:
        case.check(srv, out, drv)
    if drv == "bulk":
        assert out.attempts <= 1, out.raw  # max_attempts 1: never retried
    if out.status != "sent":
        assert out.errmsg, out.raw  # a failure always says why


@pytest.mark.parametrize("case,drv,field", _gap_params())
def test_known_gap(case, drv, field, server, tmp_path):
    out = _results.get((case.id, drv))
    if out is None:
        _, out = run_case(case, drv, server, tmp_path)
    got = {f: out.rcpts if f == "rcpts" else getattr(out, f) for f in _fields(field)}
    assert got == {f: case.expect[f] for f in _fields(field)}, out.raw


def test_bulk_refused_in_body_is_not_retried(server, tmp_path):
    """A refusal in the middle of the body (552, then close) is the server's
    verdict: with retries allowed (max_attempts 3) bulk still sends the
    message once, and reports the 552."""
    case = next(c for c in CASES if c.id == "refused_in_the_middle_of_body")
    srv = server(case.scripts("bulk"))
    out = run_driver("bulk", srv.port, tmp_path, body=case.body, args=case.args + ("--attempts", "3"))
    srv.max_connections = max(out.conns, 1)
    assert srv.wait(60), "the scripted server did not finish"
    assert (out.status, out.error, out.code, out.attempts) == ("failed", "SMTPC_EPERMFAIL", 552, 1), out.raw
    b = bytes(srv.received)
    bounds = srv.starts + [len(b)]
    per_conn = [b[bounds[i]:bounds[i + 1]] for i in range(len(srv.starts))]
    assert sum(b"Subject: shared" in c for c in per_conn) == 1, [c[:200] for c in per_conn]
    assert sum(c.count(b"MAIL FROM") for c in per_conn) == 1


# ---- real servers ---------------------------------------------------------------------
# The same outcome table against real implementations. Per-recipient codes
# are compared for both drivers.

REFUSED_3 = ("good1@example.org", "bad@example.org", "good2@example.org")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "no_pipelining"])
@pytest.mark.parametrize("drv", DRIVERS)
def test_aiosmtpd_happy(drv, pipelining, aiosmtpd, tmp_path):  # noqa: F811
    srv = aiosmtpd(pipelining=pipelining)
    out = run_driver(drv, srv.port, tmp_path)
    check_outcome(Case("aiosmtpd_happy", [], SENT_1), drv, out)
    assert out.conns == 1
    [env] = srv.envelopes
    assert (env.mail_from, env.rcpt_tos, env.data) == ("sender@example.org", ["a@example.org"], BODY)


@pytest.mark.parametrize("drv", DRIVERS)
def test_aiosmtpd_refused_recipient(drv, aiosmtpd, tmp_path):  # noqa: F811
    srv = aiosmtpd(pipelining=True, refuse={"bad@example.org"})
    out = run_driver(drv, srv.port, tmp_path, rcpts=REFUSED_3, body=_dots_body())
    check_outcome(Case("aiosmtpd_refused", [], dict(
        status="sent", error="SMTPC_OK", klass=OK, code=250, accepted=2,
        rcpts=[("SMTPC_OK", 250), ("SMTPC_EPERMFAIL", 550), ("SMTPC_OK", 250)])), drv, out)
    assert srv.rcpt_attempts == list(REFUSED_3)
    [env] = srv.envelopes
    assert env.rcpt_tos == ["good1@example.org", "good2@example.org"]
    assert env.data == b"".join(l + b"\r\n" for l in body_lines(_dots_body()))


@pytest.mark.parametrize("drv", DRIVERS)
def test_aiosmtpd_all_refused(drv, aiosmtpd, tmp_path):  # noqa: F811
    srv = aiosmtpd(pipelining=True, refuse={"bad@example.org"}, tempfail={"later@example.org"})
    out = run_driver(drv, srv.port, tmp_path, rcpts=("bad@example.org", "later@example.org"))
    check_outcome(Case("aiosmtpd_all_refused", [], dict(
        status="failed", error="SMTPC_EPERMFAIL", klass=PERMANENT, code=550, accepted=0,
        rcpts=[("SMTPC_EPERMFAIL", 550), ("SMTPC_ETEMPFAIL", 450)])), drv, out)
    assert srv.envelopes == []


def _postfix_run(postfix, drv, tmp_path, rcpts, sender="sender@example.org", body=BODY):  # noqa: F811
    return run_driver(drv, postfix.port, tmp_path, rcpts=rcpts, body=body, args=("--from", sender))


@pytest.mark.parametrize("drv", DRIVERS)
def test_postfix_happy(drv, postfix, tmp_path):  # noqa: F811
    out = _postfix_run(postfix, drv, tmp_path, ("b@example.net",), body=_dots_body())
    check_outcome(Case("postfix_happy", [], SENT_1), drv, out)
    [m] = postfix.wait_for(1)
    assert (m.mail_from, m.rcpt_to) == ("sender@example.org", "b@example.net")
    assert m.original == b"".join(l + b"\n" for l in body_lines(_dots_body()))


@pytest.mark.parametrize("drv", DRIVERS)
def test_postfix_refused_recipient(drv, postfix, tmp_path):  # noqa: F811
    out = _postfix_run(postfix, drv, tmp_path, ("b@example.net", "reject@example.net", "c@example.net"))
    check_outcome(Case("postfix_refused", [], dict(
        status="sent", error="SMTPC_OK", klass=OK, code=250, accepted=2,
        rcpts=[("SMTPC_OK", 250), ("SMTPC_EPERMFAIL", 550), ("SMTPC_OK", 250)])), drv, out)
    msgs = postfix.wait_for(2)
    assert sorted(m.rcpt_to for m in msgs) == ["b@example.net", "c@example.net"]
    assert all(m.original == BODY.replace(b"\r\n", b"\n") for m in msgs)
    assert len(postfix.settle()) == 2


@pytest.mark.parametrize("drv", DRIVERS)
def test_postfix_refusals(drv, postfix, tmp_path):  # noqa: F811
    """MAIL refused, every recipient refused, refused after the dot: one
    run each, nothing delivered."""
    out = _postfix_run(postfix, drv, tmp_path, ("b@example.net",), sender="sender-reject@example.org")
    check_outcome(Case("postfix_mail_refused", [], dict(status="failed", error="SMTPC_EPERMFAIL",
                                                        code=553, accepted=0)), drv, out)
    out = _postfix_run(postfix, drv, tmp_path, ("reject@example.net", "tempfail@example.net"))
    check_outcome(Case("postfix_all_refused", [], dict(
        status="failed", error="SMTPC_EPERMFAIL", code=550, accepted=0,
        rcpts=[("SMTPC_EPERMFAIL", 550), ("SMTPC_ETEMPFAIL", 450)])), drv, out)
    out = _postfix_run(postfix, drv, tmp_path, ("b@example.net",), sender="eod-reject@example.org")
    check_outcome(Case("postfix_eod_refused", [], dict(status="failed", error="SMTPC_EPERMFAIL",
                                                       code=554, accepted=1)), drv, out)
    assert postfix.settle() == []


# The detail for a transaction that failed on a positive reply of the wrong
# kind names that reply (the session once said only "send: ").
@pytest.mark.parametrize("drv", DRIVERS)
@pytest.mark.parametrize("cid,code", [("data_answered_250", "250"), ("mail_answered_354", "354"),
                                      ("dot_answered_354", "354")])
def test_errmsg_names_the_wrong_kind_reply(cid, code, drv, server, tmp_path):
    case = next(c for c in CASES if c.id == cid)
    out = _results.get((cid, drv)) or run_case(case, drv, server, tmp_path)[1]
    assert out.error == "SMTPC_EPROTO"
    assert code in out.errmsg, out.errmsg
