"""Parallel outbox flush (smtpc_outbox_flush_parallel, `smtpc queue flush
--connections K`): every message delivered exactly once, at most K
connections at once (counted by the server), the outcomes of a sequential
flush (451 deferred, flush again), one flush per spool across processes,
kill -9 loses nothing, and the progress callback is serialised."""
import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from client_servers import CountingServer, _CountingHandler, run, lines, kv
from conftest import driver
from servers.aiosmtpd_server import free_port


class _SlowHandler(_CountingHandler):
    async def handle_DATA(self, server, session, envelope):
        if self.srv.data_delay:
            await asyncio.sleep(self.srv.data_delay)
        return await super().handle_DATA(server, session, envelope)


class ConcurrencyServer(CountingServer):
    """CountingServer that also counts the sessions open at once:
    active (now) and max_active (the most seen); data_delay (seconds)
    before each end-of-data reply."""

    def __init__(self, data_delay=0.0, **kw):
        self.data_delay = data_delay
        super().__init__(**kw)
        self.controller.stop()
        self.port = free_port(self.host)
        self.active = 0
        self.max_active = 0
        srv = self

        class _S(SMTP):
            def connection_made(self, transport):
                with srv.lock:
                    srv.connections += 1
                    srv.active += 1
                    srv.max_active = max(srv.max_active, srv.active)
                super().connection_made(transport)

            def connection_lost(self, exc):
                with srv.lock:
                    srv.active -= 1
                super().connection_lost(exc)

        class _C(Controller):
            def factory(self):
                return _S(self.handler, hostname=self.hostname, enable_SMTPUTF8=True, decode_data=False)

        self.controller = _C(_SlowHandler(self), hostname=self.host, port=self.port, ready_timeout=30)
        self.controller.start()
        # The controller's readiness probe is a session too: wait for it to end.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.lock:
                if self.active == 0:
                    break
            time.sleep(0.01)
        with self.lock:
            self.connections = 0
            self.max_active = 0


@pytest.fixture
def conc():
    servers = []

    def start(**kw):
        s = ConcurrencyServer(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def queue(tmp_path, n):
    ob = str(tmp_path / "outbox")
    p = run(["--outbox", ob, "--queue", "--n", str(n)], timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert len(lines(p, "queued")) == n
    return ob


def queued(ob):
    return [f for f in os.listdir(os.path.join(ob, "queue")) if f.endswith(".msg")]


def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    return env


def flush_cmd(smtpc_bin, srv, ob, k, *extra):
    return [smtpc_bin, "queue", "flush", "--outbox", ob, "--server", f"127.0.0.1:{srv.port}",
            "--tls", "none", "--connections", str(k), *extra]


def smtpc(smtpc_bin, tmp_path, *args, timeout=600):
    return subprocess.run([smtpc_bin, *args], cwd=tmp_path, capture_output=True, timeout=timeout,
                          env=clean_env(tmp_path), text=True)


def expected(n):
    return {f"<m-0-{i}@drv.example>" for i in range(n)}


def test_2000_over_8_connections_each_once(smtpc_bin, tmp_path, conc):
    n = 2000
    ob = queue(tmp_path, n)
    srv = conc()
    r = smtpc(smtpc_bin, tmp_path, *flush_cmd(smtpc_bin, srv, ob, 8)[1:])
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sent {n}, deferred 0, failed 0, not due 0\n"
    c = collections.Counter(srv.msgids)
    assert set(c) == expected(n) and max(c.values()) == 1
    assert queued(ob) == []
    print(f"max concurrent sessions {srv.max_active}, connections {srv.connections}")
    assert 1 < srv.max_active <= 8
    # Each connection is renewed after 100 messages (the pool's default).
    assert srv.connections <= n // 100 + 8 * 2


def test_451_every_third_over_4_connections_then_flush_again(smtpc_bin, tmp_path, conc):
    n = 1000
    ob = queue(tmp_path, n)
    srv = conc(tempfail_data=lambda i, mid: i % 3 == 0)
    r = smtpc(smtpc_bin, tmp_path, *flush_cmd(smtpc_bin, srv, ob, 4, "--json")[1:])
    assert r.returncode == 75, r.stderr  # deferred: try again later
    st = json.loads(r.stdout)
    assert (st["sent"], st["deferred"], st["failed"]) == (667, 333, 0), st
    assert len(queued(ob)) == 333
    # Deferred with the outbox's backoff (60 s): not due yet...
    r = smtpc(smtpc_bin, tmp_path, *flush_cmd(smtpc_bin, srv, ob, 4, "--json")[1:])
    assert json.loads(r.stdout)["not_due"] == 333
    # ... until made due now.
    assert smtpc(smtpc_bin, tmp_path, "queue", "retry", "--outbox", ob).returncode == 0
    r = smtpc(smtpc_bin, tmp_path, *flush_cmd(smtpc_bin, srv, ob, 4, "--json")[1:])
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert (st["sent"], st["deferred"]) == (333, 0), st
    c = collections.Counter(srv.msgids)
    assert set(c) == expected(n) and max(c.values()) == 1
    assert queued(ob) == []
    assert srv.max_active <= 4


def test_two_flush_processes_at_once_each_message_once(smtpc_bin, tmp_path, conc):
    n = 1000
    ob = queue(tmp_path, n)
    srv = conc()
    go = threading.Barrier(2)
    results = [None, None]

    def one(i):
        go.wait()
        results[i] = smtpc(smtpc_bin, tmp_path, *flush_cmd(smtpc_bin, srv, ob, 4)[1:])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # One flush per spool: the other says so and asks to try later (75), or
    # (on a slow start) found nothing left to send.
    assert sorted(r.returncode for r in results)[0] == 0, [r.stderr for r in results]
    for r in results:
        assert r.returncode in (0, 75), r.stderr
        if r.returncode == 75:
            assert "another flush is running" in r.stderr
    c = collections.Counter(srv.msgids)
    assert set(c) == expected(n) and max(c.values()) == 1
    assert queued(ob) == []


def test_kill_9_during_parallel_flush_loses_nothing(smtpc_bin, tmp_path, conc):
    n = 1500
    k = 8
    ob = queue(tmp_path, n)
    srv = conc()
    rnd = random.Random(4321)
    kills = 0
    for _ in range(60):
        if not queued(ob):
            break
        proc = subprocess.Popen(flush_cmd(smtpc_bin, srv, ob, k), cwd=tmp_path, env=clean_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.01, 0.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    r = smtpc(smtpc_bin, tmp_path, *flush_cmd(smtpc_bin, srv, ob, k)[1:])  # finish whatever is left
    assert r.returncode == 0, r.stderr
    assert queued(ob) == []
    c = collections.Counter(srv.msgids)
    assert set(c) == expected(n)  # nothing lost
    dups = sum(v - 1 for v in c.values())
    print(f"kills={kills} duplicates={dups}")
    # Duplicates only in the window between a server's 250 and the unlink:
    # at most one per worker per kill.
    assert dups <= kills * k
    assert kills >= 3


def test_progress_is_serialised_and_complete(tmp_path, conc):
    n = 300
    ob = queue(tmp_path, n)
    srv = conc()
    p = subprocess.run([driver("outbox"), "--port", str(srv.port), "--outbox", ob, "--connections", "8",
                        "--progress-sleep-us", "200"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    st = kv(lines(p, "outbox")[0])
    assert st["rc"] == "SMTPC_OK" and st["sent"] == str(n), st
    pr = kv(lines(p, "progress")[0])
    assert pr["ok"] == "1", pr
    assert pr["calls"] == str(n + 1)
    assert int(pr["threads"]) > 1  # called from several workers, one at a time
    assert len(set(srv.msgids)) == n == len(srv.msgids)


def test_same_client_twice_is_busy_and_sends_nothing(tmp_path, conc):
    ob = queue(tmp_path, 3)
    srv = conc()
    p = subprocess.run([driver("outbox"), "--port", str(srv.port), "--outbox", ob, "--connections", "2",
                        "--busy-client"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert kv(lines(p, "busy")[0]) == {"rc": "SMTPC_EBUSY", "sent": "0"}
    # Nothing was sent, and the clients were left idle: the next flush with
    # two distinct clients (the same process) sends all three.
    st = kv(lines(p, "outbox")[0])
    assert st["rc"] == "SMTPC_OK" and st["sent"] == "3", st
    assert sorted(srv.msgids) == sorted(expected(3)) and queued(ob) == []


def test_cancel_one_client_stops_the_flush(tmp_path, conc):
    n = 200
    ob = queue(tmp_path, n)
    srv = conc(data_delay=0.05)
    p = subprocess.run([driver("outbox"), "--port", str(srv.port), "--outbox", ob, "--connections", "4",
                        "--cancel-after-ms", "400"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    st = kv(lines(p, "outbox")[0])
    assert st["rc"] == "SMTPC_ECANCELED", st
    left = queued(ob)
    sent = int(st["sent"])
    # Stopped early: the other workers finished the message they were on.
    assert 0 < sent < n and sent + len(left) == n, (st, len(left))
    # Nothing sent twice, nothing lost: only the canceled client's message
    # may be on the server and still queued ("may have been delivered").
    c = collections.Counter(srv.msgids)
    assert max(c.values()) == 1
    assert sent <= len(srv.msgids) <= sent + 1
    assert set(c) | {mid for mid in expected(n)} == expected(n)


def test_clients_sharing_one_pool(tmp_path, conc):
    n = 400
    ob = queue(tmp_path, n)
    srv = conc()
    p = subprocess.run([driver("outbox"), "--port", str(srv.port), "--outbox", ob, "--connections", "4",
                        "--shared-pool"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    st = kv(lines(p, "outbox")[0])
    assert st["rc"] == "SMTPC_OK" and st["sent"] == str(n), st
    c = collections.Counter(srv.msgids)
    assert set(c) == expected(n) and max(c.values()) == 1
    assert 1 < srv.max_active <= 4


def test_451_every_third_over_4_connections_library(tmp_path, conc):
    # test_outbox.py's scenario (backoff 0: due again at once) through
    # smtpc_outbox_flush_parallel with 4 clients.
    n = 1000
    ob = queue(tmp_path, n)
    srv = conc(tempfail_data=lambda i, mid: i % 3 == 0)

    def flush():
        p = subprocess.run([driver("outbox"), "--port", str(srv.port), "--outbox", ob, "--connections", "4",
                            "--backoff-ms", "0"], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert kv(lines(p, "progress")[0])["ok"] == "1"
        return kv(lines(p, "outbox")[0])

    st = flush()
    assert st["rc"] == "SMTPC_OK"
    assert (int(st["sent"]), int(st["deferred"])) == (667, 333), st
    st = flush()
    assert (int(st["sent"]), int(st["deferred"])) == (333, 0), st
    c = collections.Counter(srv.msgids)
    assert set(c) == expected(n) and max(c.values()) == 1
    assert queued(ob) == []
    assert 1 < srv.max_active <= 4
