"""The client against real servers: connection re-use, QUIT on free,
per-recipient results, strict policy, queue ids, config file."""
import os
import time

from client_servers import counting, run, lines, kv  # noqa: F401


def base(srv):
    return ["--host", "127.0.0.1", "--port", str(srv.port)]


def test_many_messages_one_connection_and_quit_on_free(counting):
    srv = counting()
    p = run(base(srv) + ["--n", "20"])
    assert p.returncode == 0, p.stdout + p.stderr
    sends = lines(p, "send")
    assert len(sends) == 20
    assert all(kv(l)["rc"] == "SMTPC_OK" for l in sends)
    # The first opens the connection, the others re-use it.
    assert kv(sends[0])["reused"] == "0"
    assert all(kv(l)["reused"] == "1" for l in sends[1:])
    time.sleep(0.3)
    assert srv.connections == 1
    assert len(srv.msgids) == 20 and len(set(srv.msgids)) == 20
    assert srv.quits == 1  # smtpc_client_free said goodbye


def test_queue_id_in_result(counting):
    srv = counting(data_reply="250 2.0.0 Ok: queued as 4FxYz12")
    p = run(base(srv))
    assert kv(lines(p, "send")[0])["queue"] == "4FxYz12"


def test_partial_recipients_continue(counting):
    srv = counting(refuse={"bad@example.org"})
    p = run(base(srv) + ["--to", "good@example.org", "--to", "bad@example.org", "--to", "ok2@example.org"])
    assert p.returncode == 0, p.stdout
    rc = lines(p, "rcpt")
    assert [l.split()[3] for l in rc] == ["good@example.org", "bad@example.org", "ok2@example.org"]
    assert [kv(l)["accepted"] for l in rc] == ["1", "0", "1"]
    assert [kv(l)["code"] for l in rc] == ["250", "550", "250"]
    assert srv.envelopes[0].rcpt_tos == ["good@example.org", "ok2@example.org"]


def test_partial_recipients_strict_fails_and_delivers_nothing(counting):
    srv = counting(pipelining=False, refuse={"bad@example.org"})
    p = run(base(srv) + ["--strict", "--n", "2", "--to", "good@example.org", "--to", "bad@example.org"])
    assert p.returncode == 1
    sends = lines(p, "send")
    assert [kv(l)["rc"] for l in sends] == ["SMTPC_EPERMFAIL", "SMTPC_EPERMFAIL"]
    assert srv.envelopes == []
    # The connection survived the refusal (RSET), so the second send re-used it.
    assert srv.connections == 1


def test_config_file_account(counting, tmp_path):
    srv = counting()
    cfg = tmp_path / "smtpc.conf"
    cfg.write_text(f"[account other]\nserver = 127.0.0.1:1\n[account lab]\nserver = 127.0.0.1:{srv.port}\n"
                   "timeout = 20s\n")
    os.chmod(cfg, 0o600)
    p = run(["--config", str(cfg), "--account", "lab", "--n", "2"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(srv.msgids) == 2
    p = run(["--config", str(cfg), "--account", "other"])
    assert p.returncode == 1
    assert kv(lines(p, "send")[0])["rc"] == "SMTPC_ENETWORK"


def test_raw_send_mem(counting):
    srv = counting()
    p = run(base(srv) + ["--raw", "--to", "x@example.org"])
    assert p.returncode == 0, p.stdout
    assert srv.envelopes[0].rcpt_tos == ["x@example.org"]
    assert srv.envelopes[0].data.endswith(b"raw body\r\n")


def test_raw_send_envelope_callback_survives_dead_idle_connection(counting):
    # The body comes from a one-shot callback; the dead pooled connection is
    # detected before the body is read, so the fresh retry is still possible.
    srv = counting(close_after_each=True)
    p = run(base(srv) + ["--raw-cb", "--n", "2", "--sleep-ms", "300", "--noop-after-ms", "-1"])
    assert p.returncode == 0, p.stdout
    assert len(srv.envelopes) == 2
    assert all(e.data.endswith(b"raw body\r\n") for e in srv.envelopes)
    assert srv.connections == 2


def test_identity_callback_user_with_control_characters_refused(counting):
    # The pool key separates its fields with control characters: such a user
    # name could pose as another key. Refused before connecting.
    srv = counting()
    p = run(base(srv) + ["--ident", "al\x1fice=pw", "--tls", "none"])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_EINVAL", p.stdout
    assert "control characters" in lines(p, "err")[0]
    assert lines(p, "cbcalls") == ["cbcalls 1"]
    time.sleep(0.2)
    assert srv.connections == 0
