"""Retries: transient failures retried with backoff, 5xx never, nothing
after the final dot."""
import time

from client_servers import counting, run, lines, kv  # noqa: F401
from servers.scripted import scripted  # noqa: F401


def test_transient_retried_with_backoff_then_delivered(counting):
    srv = counting(tempfail_data=lambda n, mid: True)  # 451 to the first DATA of each message
    t0 = time.monotonic()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "3,300,2,1000"])
    el = time.monotonic() - t0
    assert p.returncode == 0, p.stdout
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_OK" and s["attempts"] == "2"
    assert el >= 0.3
    assert srv.msgids == ["<m-0-0@drv.example>"]


def test_transient_without_policy_not_retried(counting):
    srv = counting(tempfail_data=lambda n, mid: True)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port)])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_ETEMPFAIL" and s["attempts"] == "1"
    assert srv.msgids == []


def test_backoff_grows_and_attempts_bounded(scripted):
    # Every connection: greeting, EHLO, then 421 to MAIL and close.
    srv = scripted([
        ("send", b"220 hi\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250 hi\r\n"),
        ("expect", rb"^MAIL "),
        ("send", b"421 4.3.2 busy\r\n"),
        ("close",),
    ], connections=10)
    t0 = time.monotonic()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "3,200,2,10000"])
    el = time.monotonic() - t0
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_ETEMPFAIL" and s["attempts"] == "3", p.stdout
    assert el >= 0.2 + 0.4  # 200 ms then 400 ms
    time.sleep(0.2)
    assert srv.connections == 3


def test_permanent_never_retried(counting):
    srv = counting(refuse={"b@example.org"})
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "5,10,1,10"])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_EPERMFAIL" and s["attempts"] == "1"
    assert srv.rcpt_attempts == ["b@example.org"]


def test_unknown_after_dot_never_retried(scripted):
    srv = scripted([
        ("send", b"220 hi\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250-hi\r\n250 PIPELINING\r\n"),
        ("expect_lines", 3),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("expect_data",),
        ("drop",),  # lost after the final dot
    ], connections=5)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "5,10,1,10"])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_EUNKNOWN" and s["attempts"] == "1", p.stdout
    time.sleep(0.3)
    assert srv.connections == 1 and len(srv.messages) == 1


# ---- per-recipient 4xx retry ----

from client_servers import _CountingHandler  # noqa: E402


class _TempfailOnce(_CountingHandler):
    """451 to the first RCPT of each address in srv.tempfail_once, then the
    normal answers (250, or 550 for srv.refuse)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.srv.lock:
            first = address in self.srv.tempfail_once and address not in self.srv.tempfailed
            if first:
                self.srv.tempfailed.add(address)
                self.srv.rcpt_attempts.append(address)
        if first:
            return "451 4.2.0 <{}>: greylisted, try again".format(address)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def tempfail_once(counting, addrs, **kw):
    srv = counting(**kw)
    srv.tempfail_once = set(addrs)
    srv.tempfailed = set()
    srv.controller.handler = _TempfailOnce(srv)  # used for every new connection
    return srv


def rcpts(p):
    return {l.split()[3]: kv(l) for l in lines(p, "rcpt")}


def test_rcpt_4xx_retried_alone_each_recipient_delivered_once(counting):
    srv = tempfail_once(counting, {"slow@example.org"})
    t0 = time.monotonic()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "3,300,2,1000",
             "--to", "b@example.org", "--to", "slow@example.org"])
    el = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_OK" and s["attempts"] == "2"
    r = rcpts(p)
    assert r["b@example.org"]["accepted"] == "1" and r["b@example.org"]["attempts"] == "1"
    assert r["slow@example.org"]["accepted"] == "1" and r["slow@example.org"]["code"] == "250"
    assert r["slow@example.org"]["attempts"] == "2"
    assert el >= 0.3  # the backoff was respected
    # Two transactions: everyone first, then only the recipient that got 451.
    assert [e.rcpt_tos for e in srv.envelopes] == [["b@example.org"], ["slow@example.org"]]
    assert srv.rcpt_attempts == ["b@example.org", "slow@example.org", "slow@example.org"]
    assert srv.msgids == ["<m-0-0@drv.example>", "<m-0-0@drv.example>"]


def test_rcpt_4xx_retry_never_offers_5xx_recipients_again(counting):
    srv = tempfail_once(counting, {"slow@example.org"}, refuse={"bad@example.org"})
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "3,50,1,50", "--raw",
             "--to", "b@example.org", "--to", "bad@example.org", "--to", "slow@example.org"])
    assert p.returncode == 0, p.stdout + p.stderr
    r = rcpts(p)
    assert [r[a]["accepted"] for a in ("b@example.org", "bad@example.org", "slow@example.org")] == ["1", "0", "1"]
    assert r["bad@example.org"]["code"] == "550" and r["bad@example.org"]["attempts"] == "1"
    assert [e.rcpt_tos for e in srv.envelopes] == [["b@example.org"], ["slow@example.org"]]
    assert srv.rcpt_attempts == ["b@example.org", "bad@example.org", "slow@example.org", "slow@example.org"]


def test_rcpt_4xx_without_policy_is_the_final_outcome(counting):
    srv = tempfail_once(counting, {"slow@example.org"})
    p = run(["--host", "127.0.0.1", "--port", str(srv.port),
             "--to", "b@example.org", "--to", "slow@example.org"])
    assert p.returncode == 0, p.stdout + p.stderr
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_OK" and s["attempts"] == "1"
    r = rcpts(p)
    assert r["slow@example.org"]["accepted"] == "0" and r["slow@example.org"]["code"] == "451"
    assert [e.rcpt_tos for e in srv.envelopes] == [["b@example.org"]]


def test_rcpt_4xx_with_one_shot_body_not_retried(counting):
    # A read-callback body without rewind was consumed by the first delivery.
    srv = tempfail_once(counting, {"slow@example.org"})
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--retry", "3,50,1,50", "--raw-cb",
             "--to", "b@example.org", "--to", "slow@example.org"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert kv(lines(p, "send")[0])["attempts"] == "1"
    assert rcpts(p)["slow@example.org"]["code"] == "451"
    assert [e.rcpt_tos for e in srv.envelopes] == [["b@example.org"]]
