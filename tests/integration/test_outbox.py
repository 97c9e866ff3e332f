"""Outbox: durable queue, flush with transient failures and backoff,
permanent failures to failed/, kill -9 at random moments loses nothing."""
import collections
import os
import random
import signal
import subprocess
import time

from client_servers import counting, run, lines, kv  # noqa: F401
from conftest import driver


def queue(tmp_path, n):
    ob = str(tmp_path / "outbox")
    p = run(["--outbox", ob, "--queue", "--n", str(n)], timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert len(lines(p, "queued")) == n
    return ob


def flush(srv, ob, *extra):
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--outbox", ob, "--flush", *extra], timeout=600)
    return kv(lines(p, "outbox")[0])


def test_1000_with_451_every_third_then_all_once(counting, tmp_path):
    ob = queue(tmp_path, 1000)
    assert len(os.listdir(os.path.join(ob, "queue"))) == 1000
    srv = counting(tempfail_data=lambda n, mid: n % 3 == 0)
    st = flush(srv, ob, "--backoff-ms", "0")
    assert st["rc"] == "SMTPC_OK"
    assert int(st["sent"]) == 667 and int(st["deferred"]) == 333, st
    st = flush(srv, ob, "--backoff-ms", "0")
    assert int(st["sent"]) == 333 and int(st["deferred"]) == 0, st
    c = collections.Counter(srv.msgids)
    assert set(c) == {f"<m-0-{i}@drv.example>" for i in range(1000)}
    assert max(c.values()) == 1
    assert os.listdir(os.path.join(ob, "queue")) == []
    # Pooled: one connection per flush, renewed every 100 messages (the default limit).
    assert srv.connections <= 1000 // 100 + 2


def test_backoff_keeps_deferred_until_due(counting, tmp_path):
    ob = queue(tmp_path, 2)
    srv = counting(tempfail_data=lambda n, mid: True)
    st = flush(srv, ob, "--backoff-ms", "60000")
    assert int(st["deferred"]) == 2
    st = flush(srv, ob, "--backoff-ms", "60000")
    assert int(st["not_due"]) == 2 and int(st["sent"]) == 0
    p = run(["--outbox", ob, "--list"])
    ent = lines(p, "entry")
    assert len(ent) == 2 and all("attempts=1" in e and "SMTPC_ETEMPFAIL" in e for e in ent)


def test_permanent_failure_moves_to_failed(counting, tmp_path):
    ob = queue(tmp_path, 3)
    srv = counting(refuse={"b@example.org"})
    st = flush(srv, ob)
    assert int(st["failed"]) == 3
    assert os.listdir(os.path.join(ob, "queue")) == []
    assert len([f for f in os.listdir(os.path.join(ob, "failed")) if f.endswith(".msg")]) == 3
    state = [f for f in os.listdir(os.path.join(ob, "failed")) if f.endswith(".state")][0]
    assert "550" in open(os.path.join(ob, "failed", state)).read()


def test_kill_9_during_flush_loses_nothing(counting, tmp_path):
    n = 500
    ob = queue(tmp_path, n)
    srv = counting()
    rnd = random.Random(1234)
    kills = 0
    for _ in range(40):
        if not [f for f in os.listdir(os.path.join(ob, "queue")) if f.endswith(".msg")]:
            break
        proc = subprocess.Popen([driver("client"), "--host", "127.0.0.1", "--port", str(srv.port),
                                 "--outbox", ob, "--flush", "--backoff-ms", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.02, 0.12))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    st = flush(srv, ob, "--backoff-ms", "0")  # finish whatever is left
    assert st["rc"] == "SMTPC_OK"
    assert [f for f in os.listdir(os.path.join(ob, "queue")) if f.endswith(".msg")] == []
    c = collections.Counter(srv.msgids)
    assert set(c) == {f"<m-0-{i}@drv.example>" for i in range(n)}  # nothing lost
    dups = sum(v - 1 for v in c.values())
    print(f"kills={kills} duplicates={dups}")
    # Duplicates only in the window between the server's 250 and the unlink:
    # at most one per kill.
    assert dups <= kills
    assert kills >= 3


def test_partly_refused_recipients_are_kept(counting, tmp_path):
    ob = str(tmp_path / "outbox")
    p = run(["--outbox", ob, "--queue", "--to", "good@example.org", "--to", "later@example.org",
             "--to", "bad@example.org"])
    assert p.returncode == 0, p.stdout + p.stderr
    srv = counting(tempfail={"later@example.org"}, refuse={"bad@example.org"})
    st = flush(srv, ob, "--backoff-ms", "0")
    assert (st["sent"], st["deferred"], st["failed"]) == ("1", "1", "1"), st
    assert [e.rcpt_tos for e in srv.envelopes] == [["good@example.org"]]
    ent = lines(run(["--outbox", ob, "--list"]), "entry")
    assert len(ent) == 2
    assert any("failed=1" in e and "550" in e for e in ent)
    assert any("failed=0" in e and "450" in e and "rcpts=1" in e for e in ent)
    srv2 = counting()
    st = flush(srv2, ob, "--backoff-ms", "0")
    assert st["sent"] == "1"
    assert [e.rcpt_tos for e in srv2.envelopes] == [["later@example.org"]]
    assert srv2.envelopes[0].data == srv.envelopes[0].data  # the same message
