"""The outbox on PostgreSQL (smtpc-queue(7)) against a real PostgreSQL 15
(servers/postgres.py) and a recording aiosmtpd: schema init, enqueue by SQL
inside the application's transaction, workers draining one queue, a worker
killed or stopped, retries and failures, and the database's errors."""
import asyncio
import hashlib
import re
import signal
import subprocess
import time

import pytest

from conftest import BUILD_DIR
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postgres import PORT, PSQL, postgres  # noqa: F401

SMTPC = str(BUILD_DIR / "smtpc")


def built_off():
    """The build was configured with SMTPC_POSTGRESQL=OFF (a build that
    merely lacked libpq-dev fails these tests: make check installs it)."""
    cache = BUILD_DIR / "CMakeCache.txt"
    return cache.exists() and re.search(r"^SMTPC_POSTGRESQL:STRING=OFF$", cache.read_text(), flags=re.M) is not None


pytestmark = pytest.mark.skipif(built_off(), reason="built with SMTPC_POSTGRESQL=OFF")


def smtpc(*args, timeout=120, env=None):
    return subprocess.run([SMTPC, *args], capture_output=True, timeout=timeout, env=env)


def wait_until(cond, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def subjects(srv):
    with srv.lock:
        return [re.search(rb"Subject: (\S+)", e.data).group(1).decode() for e in srv.envelopes]


def slow_data(srv, seconds):
    """Delays every end-of-DATA reply of srv (messages stay in flight)."""
    h = srv.controller.handler
    orig = h.handle_DATA

    async def slow(server, session, envelope):
        await asyncio.sleep(seconds)
        return await orig(server, session, envelope)
    h.handle_DATA = slow


class Queue:
    def __init__(self, pg):
        self.pg = pg
        self.db = pg.new_db()
        self.url = pg.url(self.db)
        r = smtpc("queue", "init", "--outbox", self.url)
        assert r.returncode == 0, r.stderr
        self.workers = []

    def sql(self, text):
        return self.pg.sql(self.db, text)

    def enqueue(self, n, rcpt="r@example.org", prefix="m"):
        self.sql("select smtpc.enqueue('s@example.org', array['%s'], convert_to('Subject: %s' || g ||"
                 " E'\\r\\n\\r\\nbody\\r\\n', 'UTF8')) from generate_series(1, %d) g" % (rcpt, prefix, n))

    def pg_psql(self):
        """A psql argv on this database (a session the test keeps open)."""
        return [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.pg.dir, "-p", str(PORT),
                "-U", self.pg.user, "-d", self.db]

    def states(self):
        out = self.sql("select state, count(*) from smtpc.messages group by state")
        return {k: int(v) for k, v in (line.split("|") for line in out.split())}

    def worker(self, srv, *extra):
        p = subprocess.Popen([SMTPC, "queue", "worker", "--outbox", self.url, "--server", f"127.0.0.1:{srv.port}",
                              "--tls", "none", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.workers.append(p)
        return p

    def close(self):
        for p in self.workers:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def queue(postgres):
    q = Queue(postgres)
    yield q
    q.close()


def test_init_concurrently_from_two_processes(postgres):
    db = postgres.new_db()
    url = postgres.url(db)
    procs = [subprocess.Popen([SMTPC, "queue", "init", "--outbox", url], stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert postgres.sql(db, "select value from smtpc.settings where key = 'schema_version'").strip() == "2"
    # again: nothing to do, still fine
    r = smtpc("queue", "init", "--outbox", url)
    assert r.returncode == 0, r.stderr
    assert postgres.sql(db, "select count(*) from smtpc.messages").strip() == "0"


def test_init_upgrades_a_version_1_schema(postgres):
    db = postgres.new_db()
    url = postgres.url(db)
    assert smtpc("queue", "init", "--outbox", url).returncode == 0
    postgres.sql(db, "drop function smtpc.enqueue_many; alter table smtpc.messages alter column body"
                     " set compression pglz; update smtpc.settings set value = '1' where key = 'schema_version'")
    r = smtpc("queue", "init", "--outbox", url)
    assert r.returncode == 0, r.stderr
    assert postgres.sql(db, "select value from smtpc.settings where key = 'schema_version'").strip() == "2"
    assert postgres.sql(db, "select count(*) from pg_proc where proname = 'enqueue_many'").strip() == "1"


def test_bodies_are_compressed_with_lz4_when_the_server_has_it(queue):
    if queue.sql("select 'lz4' = any(enumvals) from pg_settings"
                 " where name = 'default_toast_compression'").strip() != "t":
        pytest.skip("this PostgreSQL was built without lz4")
    assert queue.sql("select attcompression from pg_attribute where attrelid = 'smtpc.messages'::regclass"
                     " and attname = 'body'").strip() == "l"


def test_enqueue_in_the_applications_transaction(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    w = queue.worker(srv)
    queue.sql("begin; select smtpc.enqueue('s@example.org', array['r@example.org'],"
              " convert_to(E'Subject: rolledback\\r\\n\\r\\nx\\r\\n', 'UTF8')); rollback;")
    queue.sql("begin; select smtpc.enqueue('s@example.org', array['r@example.org'],"
              " convert_to(E'Subject: committed\\r\\n\\r\\nx\\r\\n', 'UTF8')); commit;")
    wait_until(lambda: queue.states().get("sent") == 1, what="the committed message sent")
    time.sleep(1)
    assert subjects(srv) == ["committed"]
    w.send_signal(signal.SIGTERM)
    out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    assert b"sent 1" in out


def test_enqueue_many_in_the_applications_transaction(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    w = queue.worker(srv)
    many = ("select count(*) from smtpc.enqueue_many(array['s@example.org'], array_fill('r@example.org'::text,"
            " array[50]), array(select convert_to('Subject: %s' || g || E'\\r\\n\\r\\nx\\r\\n', 'UTF8')"
            " from generate_series(1, 50) g))")
    assert queue.sql("begin; %s; rollback;" % (many % "rolledback")).strip() == "50"
    assert queue.sql("begin; %s; commit;" % (many % "committed")).strip() == "50"
    wait_until(lambda: queue.states().get("sent") == 50, what="the committed messages sent")
    time.sleep(1)
    assert sorted(subjects(srv)) == sorted(f"committed{i}" for i in range(1, 51))  # each once, none rolled back
    w.send_signal(signal.SIGTERM)
    out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    assert b"sent 50" in out


def test_enqueue_many_senders_and_recipients(queue):
    ids = queue.sql("select * from smtpc.enqueue_many(array['a@example.org', 'b@example.org'],"
                    " array[E'r1@example.org\\nr2@example.org', 'r3@example.org'], array['x', 'y']::bytea[],"
                    " now() + interval '1 hour', 5)").split()
    assert len(ids) == 2
    rows = queue.sql("select sender, array_to_string(recipients, ','), convert_from(body, 'UTF8'), priority,"
                     " not_before > now() from smtpc.messages order by id").split()
    assert rows == ["a@example.org|r1@example.org,r2@example.org|x|5|t", "b@example.org|r3@example.org|y|5|t"]
    # one sender for all
    assert queue.sql("select count(*) from smtpc.enqueue_many(array['a@example.org'],"
                     " array['r@example.org', 'q@example.org'], array['x', 'y']::bytea[])").strip() == "2"
    assert queue.sql("select count(*) from smtpc.enqueue_many(array[]::text[], array[]::text[],"
                     " array[]::bytea[])").strip() == "0"
    bad = ["array['s@x'], array['r@x'], array['x', 'y']::bytea[]",  # lengths differ
           "array['s@x', 's@y', 's@z'], array['r@x', 'r@y'], array['x', 'y']::bytea[]",
           "array[E's@x\\r\\nRCPT TO:<e@vil>'], array['r@x'], array['x']::bytea[]",
           "array['s@x'], array[E'r@x\\r'], array['x']::bytea[]",
           "array['s@x'], array[E'r@x\\n'], array['x']::bytea[]",  # an empty address
           "array['s@x'], array[''], array['x']::bytea[]",
           "array['s@x'], array[null]::text[], array['x']::bytea[]",
           "array['s@x'], array['r@x'], array[null]::bytea[]"]
    for args in bad:
        r = queue.pg.sql(queue.db, "select smtpc.enqueue_many(%s)" % args, check=False)
        assert r.returncode != 0 and b"smtpc.enqueue_many" in r.stderr, args
    assert sum(queue.states().values()) == 4


def test_enqueue_refuses_bad_envelopes(queue):
    r = queue.pg.sql(queue.db, "select smtpc.enqueue(E's@x\\r\\nRCPT TO:<e@vil>', array['r@example.org'], 'x')",
                     check=False)
    assert r.returncode != 0 and b"CR/LF" in r.stderr
    r = queue.pg.sql(queue.db, "select smtpc.enqueue('s@x', array[]::text[], 'x')", check=False)
    assert r.returncode != 0
    assert queue.states() == {}


def test_send_list_and_flush_through_the_client(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    r = smtpc("send", "--outbox", queue.url, "--from", "s@example.org", "--to", "r@example.org",
              "--subject", "viasend", "--text", "hello")
    assert r.returncode == 0, r.stderr
    assert re.match(rb"queued in the outbox as \d+", r.stdout), r.stdout
    r = smtpc("queue", "list", "--outbox", queue.url)
    assert r.returncode == 0 and b"s@example.org -> r@example.org" in r.stdout, r
    r = smtpc("queue", "flush", "--outbox", queue.url, "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
              "--connections", "2")
    assert r.returncode == 0, r.stderr
    assert b"sent 1, deferred 0, failed 0" in r.stdout
    assert subjects(srv) == ["viasend"]
    assert queue.states() == {"sent": 1}
    assert smtpc("queue", "list", "--outbox", queue.url).stdout == b""


def test_three_workers_deliver_each_message_once(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    n = 600
    ws = [queue.worker(srv, "--connections", "3") for _ in range(3)]
    queue.enqueue(n)
    wait_until(lambda: queue.states().get("sent") == n, timeout=180, what="every message sent")
    got = subjects(srv)
    assert sorted(got) == sorted(f"m{i}" for i in range(1, n + 1))  # each exactly once
    for w in ws:
        w.send_signal(signal.SIGTERM)
    counts = []
    for w in ws:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        counts.append(int(re.search(rb"sent (\d+)", out).group(1)))
    assert sum(counts) == n
    assert queue.sql("select count(*) from smtpc.workers").strip() == "0"  # each said goodbye


def test_a_killed_workers_messages_are_taken_over(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    slow_data(srv, 0.3)
    n = 40
    queue.enqueue(n)
    a = queue.worker(srv, "--connections", "2", "--lease", "2s")
    wait_until(lambda: len(subjects(srv)) >= 3, what="the first worker sending")
    a.send_signal(signal.SIGKILL)
    a.wait()
    held = queue.states().get("sending", 0)
    assert held > 0  # the dead worker's claims
    b = queue.worker(srv, "--connections", "2", "--lease", "2s")
    wait_until(lambda: queue.states().get("sent") == n, timeout=180, what="every message sent")
    got = subjects(srv)
    assert set(got) == {f"m{i}" for i in range(1, n + 1)}  # none lost
    # duplicates only from the dead worker's window: in flight on its 2
    # connections, or accepted and not yet written back
    assert len(got) - n <= 6, sorted(got)
    taken = queue.sql("select count(*) from smtpc.messages where last_error like 'the lease of worker %expired%'"
                      " or attempts > 1")
    assert int(taken) >= 1
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0


def test_killed_before_its_outcomes_are_written(queue, aiosmtpd):
    """Outcomes are written in batches, after the messages went: a worker
    killed in between leaves them claimed; after the lease another worker
    sends them again (the documented unknown window: duplicates, none lost).
    The table is locked so that no outcome can be written meanwhile."""
    srv = aiosmtpd(pipelining=True)
    slow_data(srv, 1.0)
    n = 10
    queue.enqueue(n)
    a = queue.worker(srv, "--connections", "1", "--lease", "2s")
    wait_until(lambda: queue.states().get("sending") == n, what="the first worker's claim")
    lock = subprocess.Popen([queue.pg_psql()[0], *queue.pg_psql()[1:]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    lock.stdin.write("begin;\nlock table smtpc.messages in share mode;\nselect 'locked';\n")
    lock.stdin.flush()
    assert lock.stdout.readline().strip() == "locked"
    try:
        wait_until(lambda: len(subjects(srv)) >= 2, what="messages accepted by the server")
        a.send_signal(signal.SIGKILL)
        a.wait()
        # the dead worker's sessions go too (a lost machine): a statement
        # waiting for the lock would otherwise still run when it is released
        lock.stdin.write("select count(pg_terminate_backend(pid, 30000)) from pg_stat_activity"
                         " where datname = current_database() and pid <> pg_backend_pid();\n")
        lock.stdin.flush()
        assert int(lock.stdout.readline()) >= 1
    finally:
        lock.stdin.write("rollback;\n")
        lock.stdin.close()
        lock.wait(60)
    before = len(subjects(srv))
    assert queue.states() == {"sending": n}  # nothing written back
    b = queue.worker(srv, "--connections", "2", "--lease", "2s")
    wait_until(lambda: queue.states().get("sent") == n, timeout=180, what="every message sent")
    got = subjects(srv)
    assert set(got) == {f"m{i}" for i in range(1, n + 1)}  # none lost
    assert len(got) - n == before  # what went before the kill went again, nothing else
    assert queue.sql("select count(*) from smtpc.messages where attempts = 2").strip() == str(n)
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0


def test_sigterm_finishes_in_flight_and_releases_the_rest(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    slow_data(srv, 0.2)
    n = 60
    queue.enqueue(n)
    w = queue.worker(srv, "--connections", "2")
    wait_until(lambda: len(subjects(srv)) >= 4, what="the worker sending")
    w.send_signal(signal.SIGTERM)
    out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    st = queue.states()
    assert "sending" not in st  # nothing left claimed
    got = subjects(srv)
    assert st.get("sent", 0) == len(got) and len(set(got)) == len(got)
    assert st.get("queued", 0) == n - len(got) > 0
    # released, not tried: no attempt counted, due now
    assert queue.sql("select count(*) from smtpc.messages where state = 'queued' and (attempts > 0"
                     " or not_before > now())").strip() == "0"


def test_outcomes_keep_each_recipients_code(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True, tempfail={"later@example.org"})
    queue.enqueue(1, rcpt="one@example.org", prefix="one")
    queue.sql("select smtpc.enqueue('s@example.org', array['a@example.org', 'b@example.org'],"
              " convert_to(E'Subject: two\\r\\n\\r\\nx\\r\\n', 'UTF8'))")
    queue.enqueue(1, rcpt="later@example.org", prefix="later")
    w = queue.worker(srv)
    wait_until(lambda: queue.states() == {"sent": 2, "queued": 1}, what="outcomes")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0
    rows = queue.sql("select recipients[1], state, last_code, rcpt_codes, last_error = '' from smtpc.messages"
                     " order by id").split()
    assert rows == ["one@example.org|sent|250|{250}|t", "a@example.org|sent|250|{250,250}|t",
                    "later@example.org|queued|450|{450}|f"], rows


def test_large_claims_arrive_whole(queue, aiosmtpd):
    """Claims of hundreds of large bodies (megabytes, more than a socket
    buffer holds): every body arrives whole, each message once."""
    srv = aiosmtpd(pipelining=True)
    queue.sql("select smtpc.enqueue('s@example.org', array['r@example.org'], convert_to('Subject: big' || g ||"
              " E'\\r\\n\\r\\n' || (select string_agg(md5((g * 1000 + k)::text), E'\\r\\n') from generate_series(1, 600) k)"
              " || E'\\r\\n', 'UTF8')) from generate_series(1, 600) g")
    w = queue.worker(srv, "--connections", "8")
    wait_until(lambda: queue.states() == {"sent": 600}, timeout=180, what="600 messages sent")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0
    assert sorted(subjects(srv)) == sorted(f"big{g}" for g in range(1, 601))
    for e in srv.envelopes:
        g = int(re.search(rb"Subject: big(\d+)", e.data).group(1))
        body = "\r\n".join(hashlib.md5(str(g * 1000 + k).encode()).hexdigest() for k in range(1, 601))
        assert e.data.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") == body.encode(), g


def test_4xx_is_retried_with_backoff_and_5xx_kept_failed(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True, tempfail={"later@example.org"}, refuse={"nobody@example.org"})
    queue.enqueue(1, rcpt="later@example.org", prefix="temp")
    queue.enqueue(1, rcpt="nobody@example.org", prefix="perm")
    queue.sql("select smtpc.enqueue('s@example.org', array['ok@example.org', 'nobody@example.org'],"
              " convert_to(E'Subject: half\\r\\n\\r\\nx\\r\\n', 'UTF8'))")
    w = queue.worker(srv)
    wait_until(lambda: queue.states() == {"queued": 1, "failed": 2, "sent": 1}, what="outcomes")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0
    row = queue.sql("select id, attempts, extract(epoch from not_before - now())::int, last_error"
                    " from smtpc.messages where state = 'queued'").strip().split("|")
    assert row[1] == "1" and 45 <= int(row[2]) <= 61, row  # 60 s after the first failure
    assert "450" in row[3], row
    failed = queue.sql("select recipients[1], last_code, last_error, parent is not null from smtpc.messages"
                       " where state = 'failed' order by id")
    assert re.search(r"nobody@example.org\|550\|.*550.*\|f", failed), failed
    assert re.search(r"nobody@example.org\|550\|recipient refused: 550.*\|t", failed), failed  # split off
    assert subjects(srv) == ["half"]
    assert srv.envelopes[0].rcpt_tos == ["ok@example.org"]
    r = smtpc("queue", "list", "--outbox", queue.url)
    assert b"[SMTPC_ETEMPFAIL" in r.stdout and b"failed" in r.stdout, r.stdout
    # retry makes it due now; the second failure waits twice as long
    r = smtpc("queue", "retry", row[0], "--outbox", queue.url)
    assert r.returncode == 0, r.stderr
    w = queue.worker(srv)
    wait_until(lambda: queue.sql(f"select attempts from smtpc.messages where id = {row[0]}").strip() == "2",
               what="second attempt")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0
    delay = int(queue.sql(f"select extract(epoch from not_before - now())::int from smtpc.messages"
                          f" where id = {row[0]}"))
    assert 105 <= delay <= 121, delay
    # drop removes it; a second drop finds nothing
    assert smtpc("queue", "drop", row[0], "--outbox", queue.url).returncode == 0
    assert smtpc("queue", "drop", row[0], "--outbox", queue.url).returncode == 65  # EX_DATAERR


def test_stats(queue, aiosmtpd):
    queue.enqueue(3)
    r = smtpc("queue", "stats", "--outbox", queue.url, "--json")
    assert r.returncode == 0, r.stderr
    assert re.search(rb'"queued":3,"due":3,"sending":0,"sent":0,"failed":0', r.stdout), r.stdout
    srv = aiosmtpd(pipelining=True)
    w = queue.worker(srv)
    wait_until(lambda: queue.states() == {"sent": 3}, what="sent")
    r = smtpc("queue", "stats", "--outbox", queue.url)
    assert b"sent 3 (last minute 3)" in r.stdout and b"live workers 1" in r.stdout, r.stdout
    assert re.search(rb"worker \S+:\d+  live", r.stdout), r.stdout
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_database_restart_under_a_running_worker(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    w = queue.worker(srv)
    queue.enqueue(2, prefix="before")
    wait_until(lambda: queue.states().get("sent") == 2, what="sent before the restart")
    queue.pg.stop()
    time.sleep(1)
    queue.pg.start()
    queue.enqueue(2, prefix="after")
    wait_until(lambda: queue.states().get("sent") == 4, timeout=120, what="sent after the restart")
    assert sorted(subjects(srv)) == ["after1", "after2", "before1", "before2"]
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_claims_and_outcomes_are_prepared_once_per_session(queue, aiosmtpd):
    """The worker's claim and outcome statements are prepared once on each
    server session and then only executed (planning each of them cost the
    server about 1.4 us per message); a database restart starts new
    sessions, where they are prepared again. Seen in the server's statement
    log of this test's database."""
    queue.sql(f"alter database {queue.db} set log_min_duration_statement = 0")
    with open(queue.pg.log, "rb") as f:
        start = f.seek(0, 2)
    srv = aiosmtpd(pipelining=True)
    w = queue.worker(srv)
    for k, prefix in enumerate(("a", "b")):
        queue.enqueue(3, prefix=prefix)
        wait_until(lambda: queue.states().get("sent") == 3 * (k + 1), what=f"round {prefix} sent")
    queue.pg.stop()
    time.sleep(1)
    queue.pg.start()
    queue.enqueue(3, prefix="c")
    wait_until(lambda: queue.states().get("sent") == 9, timeout=120, what="sent after the restart")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0
    queue.sql(f"alter database {queue.db} reset log_min_duration_statement")
    with open(queue.pg.log, "rb") as f:
        f.seek(start)
        log = f.read().decode(errors="replace")
    claim = re.compile(r"(parse|execute) (\S+): WITH c AS \(SELECT id FROM smtpc\.messages")
    outcome = re.compile(r"(parse|execute) (\S+): UPDATE smtpc\.messages m SET state = u\.st")
    for what, rx in (("claim", claim), ("outcome", outcome)):
        seen = rx.findall(log)
        names = {name for _, name in seen}
        assert names and all(n.startswith("smtpc_q") for n in names), (what, names)
        parses = sum(1 for kind, _ in seen if kind == "parse")
        executes = sum(1 for kind, _ in seen if kind == "execute")
        assert parses == 2, (what, parses)  # one session before the restart, one after
        assert executes >= 3, (what, executes)


def test_database_restart_while_sending(queue, aiosmtpd):
    """Outcomes that could not be written are not left claimed: the worker
    queues them again after it reconnects (at least once)."""
    srv = aiosmtpd(pipelining=True)
    slow_data(srv, 0.1)
    n = 40
    queue.enqueue(n)
    w = queue.worker(srv, "--connections", "2")
    wait_until(lambda: len(subjects(srv)) >= 5, what="the worker sending")
    queue.pg.stop()
    time.sleep(1)
    queue.pg.start()
    wait_until(lambda: queue.states().get("sent") == n, timeout=180, what="every message sent")
    assert set(subjects(srv)) == {f"m{i}" for i in range(1, n + 1)}  # none lost
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_database_errors_are_clear(postgres, tmp_path):
    db = postgres.new_db()
    r = smtpc("queue", "list", "--outbox", postgres.url(db, user="pwuser", password="wrong"))
    assert r.returncode == 77, r  # EX_NOPERM
    assert b"password authentication failed" in r.stderr
    r = smtpc("queue", "list", "--outbox", f"postgresql:///x?host={tmp_path}&port=1")
    assert r.returncode == 75, r  # EX_TEMPFAIL: try again later
    assert b"cannot connect" in r.stderr
    r = smtpc("queue", "list", "--outbox", postgres.url(db))
    assert r.returncode == 78, r  # EX_CONFIG
    assert b"run smtpc queue init" in r.stderr
    r = smtpc("queue", "list", "--outbox", postgres.url(db) + "&schema=Bad-Name")
    assert r.returncode != 0 and b"schema=" in r.stderr


def test_own_schema_name(postgres, aiosmtpd):
    db = postgres.new_db()
    url = postgres.url(db) + "&schema=mail_out"
    assert smtpc("queue", "init", "--outbox", url).returncode == 0
    postgres.sql(db, "select mail_out.enqueue('s@example.org', array['r@example.org'],"
                     " convert_to(E'Subject: own\\r\\n\\r\\nx\\r\\n', 'UTF8'))")
    srv = aiosmtpd(pipelining=True)
    r = smtpc("queue", "flush", "--outbox", url, "--server", f"127.0.0.1:{srv.port}", "--tls", "none")
    assert r.returncode == 0, r.stderr
    assert subjects(srv) == ["own"]
    assert postgres.sql(db, "select to_regnamespace('smtpc') is null").strip() == "t"


def test_check_is_for_a_directory_outbox(queue):
    """queue check (the directory outbox's crash repair) says why it has
    nothing to do on PostgreSQL instead of failing obscurely."""
    r = smtpc("queue", "check", "--outbox", queue.url)
    assert r.returncode == 69, r.stderr
    assert b"directory outbox" in r.stderr and b"PostgreSQL" in r.stderr


def test_worker_needs_a_database(tmp_path):
    r = smtpc("queue", "worker", "--outbox", str(tmp_path / "dir"), "--server", "127.0.0.1:1")
    assert r.returncode == 64 and b"postgresql://" in r.stderr


def test_version_says_postgresql():
    r = smtpc("--version")
    assert b"PostgreSQL outbox: yes" in r.stdout, r.stdout



def test_man_page_renders_without_warnings():
    import shutil
    from conftest import SOURCE_DIR
    if not shutil.which("groff"):
        pytest.skip("groff not installed")
    r = subprocess.run(["groff", "-mandoc", "-ww", "-Tutf8", "-z", str(SOURCE_DIR / "docs" / "smtpc-queue.7")],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()


def test_rate_is_for_the_whole_fleet(queue, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    times = []
    h = srv.controller.handler
    orig = h.handle_DATA

    async def stamp(server, session, envelope):
        times.append(time.monotonic())
        return await orig(server, session, envelope)
    h.handle_DATA = stamp
    rate, n = 30.0, 300
    ws = [queue.worker(srv, "--rate", str(rate), "--lease", "2s") for _ in range(3)]
    wait_until(lambda: queue.sql("select count(*) from smtpc.workers").strip() == "3", what="3 workers")
    time.sleep(1.5)  # every worker has counted the others
    queue.enqueue(n)
    wait_until(lambda: queue.states().get("sent") == n, timeout=180, what="every message sent")
    for w in ws:
        w.send_signal(signal.SIGTERM)
    for w in ws:
        assert w.wait(60) == 0
    ts = sorted(times)
    assert len(ts) == n
    # the steady middle: all three workers sending
    a, b = n // 10, n * 8 // 10
    measured = (b - a) / (ts[b] - ts[a])
    assert abs(measured - rate) <= rate * 0.05, f"fleet rate {measured:.2f}/s, asked {rate}/s"
    per = [int(re.search(rb"sent (\d+)", w.stdout.read()).group(1)) for w in ws]
    assert sum(per) == n and min(per) > 0, per


def test_retention_of_sent_bodies_and_rows(queue, aiosmtpd):
    queue.sql("insert into smtpc.messages (state, sender, recipients, body, done_at) values"
              " ('sent', 's@x', array['r@x'], 'old', now() - interval '8 days'),"
              " ('sent', 's@x', array['r@x'], 'new', now() - interval '1 day'),"
              " ('sent', 's@x', array['r@x'], 'ancient', now() - interval '100 days'),"
              " ('failed', 's@x', array['r@x'], 'kept', now() - interval '100 days')")
    srv = aiosmtpd(pipelining=True)
    w = queue.worker(srv)
    wait_until(lambda: queue.sql("select count(*) from smtpc.messages").strip() == "3", what="retention")
    rows = queue.sql("select state, coalesce(convert_from(body, 'UTF8'), '-') from smtpc.messages order by id")
    assert rows.split() == ["sent|-", "sent|new", "failed|kept"], rows
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_list_pages_through_a_large_queue(queue):
    queue.enqueue(2500)
    r = smtpc("queue", "list", "--outbox", queue.url, "--json")
    assert r.returncode == 0, r.stderr
    ids = re.findall(rb'"id":"(\d+)"', r.stdout)
    assert len(ids) == 2500 and len(set(ids)) == 2500


def test_unknown_outcome_is_kept_and_retried_later(queue):
    """The connection lost after the final dot: the directory outbox's rule,
    queued again after the backoff (a duplicate rather than a loss)."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]
    dots = []

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            with c:
                f = c.makefile("rb")
                c.sendall(b"220 lossy\r\n")
                data = False
                for line in f:
                    if data:
                        if line == b".\r\n":
                            dots.append(1)
                            break  # lost after the final dot
                        continue
                    cmd = line[:4].upper()
                    if cmd == b"EHLO":
                        c.sendall(b"250-lossy\r\n250 PIPELINING\r\n")
                    elif cmd == b"DATA":
                        c.sendall(b"354 go\r\n")
                        data = True
                    elif cmd == b"QUIT":
                        c.sendall(b"221 bye\r\n")
                        break
                    else:
                        c.sendall(b"250 ok\r\n")
                f.close()  # the file holds the socket open
                c.shutdown(socket.SHUT_RDWR)
    import threading
    threading.Thread(target=serve, daemon=True).start()
    queue.enqueue(1)

    class Srv:
        pass
    s = Srv()
    s.port = port
    w = queue.worker(s)
    wait_until(lambda: queue.sql("select attempts from smtpc.messages").strip() == "1", what="the attempt")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0
    ls.close()
    row = queue.sql("select state, extract(epoch from not_before - now())::int, last_error"
                    " from smtpc.messages").strip().split("|")
    assert row[0] == "queued" and 45 <= int(row[1]) <= 61 and "SMTPC_EUNKNOWN" in row[2], row
    assert len(dots) == 1
