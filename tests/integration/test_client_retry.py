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
