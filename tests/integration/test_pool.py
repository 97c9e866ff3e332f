"""Pool: many threads share connections, every message exactly once;
dead idle connections and 421 on re-use are replaced transparently."""
import collections
import time

import pytest

from client_servers import counting, run, lines, kv  # noqa: F401
from servers.scripted import scripted  # noqa: F401


def test_8_threads_500_messages_exactly_once(counting):
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--threads", "8", "--n", "500",
             "--per-endpoint", "4"], timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert lines(p, "threads") == ["threads ok=4000 failed=0"]
    c = collections.Counter(srv.msgids)
    want = {f"<m-{t}-{i}@drv.example>" for t in range(8) for i in range(500)}
    assert set(c) == want
    assert max(c.values()) == 1
    opened = int(lines(p, "opened")[0].split()[1])
    assert 1 <= opened <= 4  # shared: at most max-per-endpoint connections
    time.sleep(0.3)
    assert srv.connections == opened
    assert srv.quits == opened  # smtpc_pool_free QUITs each


def test_idle_connection_closed_by_server_without_noop(counting):
    srv = counting(close_after_each=True)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "4", "--sleep-ms", "300",
             "--noop-after-ms", "-1"])
    assert p.returncode == 0, p.stdout
    assert collections.Counter(srv.msgids) == {f"<m-0-{i}@drv.example>": 1 for i in range(4)}
    assert srv.connections == 4
    assert all(kv(l)["attempts"] == "1" for l in lines(p, "send"))


def test_idle_connection_closed_by_server_noop_detects(counting):
    srv = counting(close_after_each=True)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "3", "--sleep-ms", "300",
             "--noop-after-ms", "100"])
    assert p.returncode == 0, p.stdout
    assert collections.Counter(srv.msgids) == {f"<m-0-{i}@drv.example>": 1 for i in range(3)}
    assert srv.connections == 3


def test_421_on_reuse_retried_once_on_fresh_connection(counting):
    srv = counting(mail_421_at={2})
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "3"])
    assert p.returncode == 0, p.stdout
    assert srv.msgids == [f"<m-0-{i}@drv.example>" for i in range(3)]
    assert srv.connections == 2
    s = lines(p, "send")
    assert kv(s[1])["reused"] == "0" and kv(s[1])["attempts"] == "1"


def test_421_on_fresh_connection_not_hidden(counting):
    # A fresh connection's 421 is the server's answer, not a stale connection.
    srv = counting(mail_421_at={1}, pipelining=False)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port)])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_ETEMPFAIL" and s["attempts"] == "1" and s["code"] == "421"
    assert srv.connections == 1


def test_max_messages_per_connection(counting):
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "7", "--max-messages", "3"])
    assert p.returncode == 0
    time.sleep(0.3)
    assert srv.connections == 3 and srv.quits == 3 and len(srv.msgids) == 7


def test_max_idle_closes(counting):
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "2", "--max-idle-ms", "100",
             "--sleep-ms", "400"])
    assert p.returncode == 0
    time.sleep(0.3)
    assert srv.connections == 2 and srv.quits == 2


def test_pool_never_mixes_identities(counting):
    # Two clients on one pool whose settings differ (EHLO name here; the key
    # also holds credentials, TLS settings, proxy, bind): separate connections,
    # each re-used only by its own client.
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "6", "--second-ehlo", "other.example"])
    assert p.returncode == 0, p.stdout
    s = [kv(l) for l in lines(p, "send")]
    assert [x["reused"] for x in s] == ["0", "0", "1", "1", "1", "1"]
    assert sorted(srv.ehlo_names) == ["drv.example", "other.example"]
    assert srv.connections == 2


def test_421_on_reuse_and_on_the_fresh_connection_gives_up(counting):
    # The fresh connection is tried once: its own 421 is the answer, no third.
    srv = counting(mail_421_at={2, 3}, pipelining=False)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "2"])
    s = [kv(l) for l in lines(p, "send")]
    assert s[0]["rc"] == "SMTPC_OK"
    assert s[1]["rc"] == "SMTPC_ETEMPFAIL" and s[1]["code"] == "421" and s[1]["attempts"] == "1", p.stdout
    time.sleep(0.3)
    assert srv.connections == 2 and srv.mail_count == 3
    assert srv.msgids == ["<m-0-0@drv.example>"]


@pytest.mark.parametrize("how", ["drop", "close"])
def test_lost_after_final_dot_on_reused_connection_is_unknown_never_resent(scripted, how):
    # Two transactions on one connection; the second loses the connection
    # after its final dot. The message may have been delivered: SMTPC_EUNKNOWN,
    # no fresh-connection retry (a second connection would be accepted and
    # would take the message), no retry under the policy either.
    srv = scripted([
        ("send", b"220 hi\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250-hi\r\n250 PIPELINING\r\n"),
        ("expect_lines", 3),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("expect_data",),
        ("send", b"250 2.0.0 Ok: queued as Q1\r\n"),
        ("expect_lines", 3),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("expect_data",),
        (how,),
    ], connections=3)
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "2", "--noop-after-ms", "-1",
             "--retry", "5,10,1,10"])
    s = [kv(l) for l in lines(p, "send")]
    assert s[0]["rc"] == "SMTPC_OK" and s[0]["queue"] == "Q1"
    assert s[1]["rc"] == "SMTPC_EUNKNOWN" and s[1]["reused"] == "1" and s[1]["attempts"] == "1", p.stdout
    assert "may have been delivered" in lines(p, "err")[0]
    time.sleep(0.5)
    assert srv.connections == 1 and len(srv.messages) == 2
