"""send_async: exactly one callback; cancel while connecting and in DATA;
a second send on a busy client is SMTPC_EBUSY."""
from client_servers import counting, run, lines, kv  # noqa: F401
from servers.scripted import scripted  # noqa: F401


def test_async_callback_exactly_once(counting):
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--async", "--n", "3"])
    assert p.returncode == 0, p.stdout + p.stderr
    cbs = lines(p, "callback")
    assert len(cbs) == 3
    assert all(kv(l)["calls"] == "1" and kv(l)["rc"] == "SMTPC_OK" for l in cbs)
    assert len(srv.msgids) == 3 and srv.connections == 1


def test_cancel_while_connecting(scripted):
    srv = scripted([("hang",)])  # accepts, never greets
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--async", "--cancel-after-ms", "300",
             "--timeout-ms", "20000"])
    cb = lines(p, "callback")
    assert len(cb) == 1, p.stdout
    assert kv(cb[0])["rc"] == "SMTPC_ECANCELED" and kv(cb[0])["calls"] == "1"
    assert int(kv(cb[0])["ms"]) < 5000


def test_cancel_while_in_data(scripted):
    srv = scripted([
        ("send", b"220 hi\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250-hi\r\n250 PIPELINING\r\n"),
        ("expect_lines", 3),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("hang",),  # reads the body, never answers it
    ])
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--async", "--cancel-after-ms", "500",
             "--timeout-ms", "20000"])
    cb = lines(p, "callback")
    assert len(cb) == 1, p.stdout
    assert kv(cb[0])["rc"] == "SMTPC_ECANCELED" and kv(cb[0])["calls"] == "1"
    assert int(kv(cb[0])["ms"]) < 5000
    assert b"\r\n.\r\n" in bytes(srv.received)  # it was in DATA


def test_second_send_while_busy(scripted):
    srv = scripted([("hang",)])
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--async", "--busy-check",
             "--cancel-after-ms", "300", "--timeout-ms", "20000"])
    b = lines(p, "busy")
    assert b == ["busy rc=SMTPC_EBUSY async_rc=SMTPC_EBUSY"], p.stdout
    cb = lines(p, "callback")
    assert len(cb) == 1 and kv(cb[0])["rc"] == "SMTPC_ECANCELED"
    assert srv.connections == 1
