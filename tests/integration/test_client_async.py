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
    # The server stops reading after 354: the client is blocked writing the
    # body (32 MB, more than the socket buffers) when it is canceled.
    srv = scripted([
        ("send", b"220 hi\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250-hi\r\n250 PIPELINING\r\n"),
        ("expect_lines", 3),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("sleep", 20),
    ])
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--async", "--cancel-after-ms", "1000",
             "--timeout-ms", "20000", "--body-bytes", str(32 << 20)])
    cb = lines(p, "callback")
    assert len(cb) == 1, p.stdout
    assert kv(cb[0])["rc"] == "SMTPC_ECANCELED" and kv(cb[0])["calls"] == "1"
    assert int(kv(cb[0])["ms"]) < 5000


def test_cancel_after_final_dot_is_unknown(scripted):
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
    # The dot was sent: the server may have taken the message.
    assert kv(cb[0])["rc"] == "SMTPC_EUNKNOWN" and kv(cb[0])["calls"] == "1"
    assert b"\r\n.\r\n" in bytes(srv.received)


def test_second_send_while_busy(scripted):
    srv = scripted([("hang",)])
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--async", "--busy-check",
             "--cancel-after-ms", "300", "--timeout-ms", "20000"])
    b = lines(p, "busy")
    assert b == ["busy rc=SMTPC_EBUSY async_rc=SMTPC_EBUSY"], p.stdout
    cb = lines(p, "callback")
    assert len(cb) == 1 and kv(cb[0])["rc"] == "SMTPC_ECANCELED"
    assert srv.connections == 1
