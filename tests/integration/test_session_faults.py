"""The blocking session against a hostile or broken server (scripted), plus
network failures, timeouts, cancel and invalid arguments."""
import os
import socket
import subprocess
import time

import pytest

from conftest import driver
from servers.scripted import scripted  # noqa: F401
from test_session import Result, run

GREETING = ("send", b"220 scripted ESMTP\r\n")
EHLO = [("expect", rb"^EHLO "), ("send", b"250-test.example\r\n250 PIPELINING\r\n")]
ENVELOPE = [("expect", rb"^MAIL FROM:<sender@example.org>$"), ("send", b"250 ok\r\n"),
            ("expect", rb"^RCPT TO:<a@example.org>$"), ("send", b"250 ok\r\n")]
MSG = b"Subject: t\r\n\r\nbody\r\n"


def test_554_greeting(scripted):
    srv = scripted([("send", b"554 5.7.1 no service for you\x1b[31m\r\n"), ("hang",)])
    r = run(srv.port, "--do", "connect,ehlo")
    assert r.rc_of("connect") == "SMTPC_EPERMFAIL"
    assert r.replies["connect"][0] == 554
    assert "server replied 554 5.7.1 no service for you\\x1b[31m" in r.errs["connect"]
    assert r.connected is False
    assert "ehlo" not in r.steps


def test_421_greeting(scripted):
    srv = scripted([("send", b"421 4.3.2 busy, come back later\r\n"), ("hang",)])
    r = run(srv.port, "--do", "connect")
    assert r.rc_of("connect") == "SMTPC_ETEMPFAIL"
    assert "421" in r.errs["connect"] and r.connected is False


def test_no_greeting_times_out_at_the_set_value(scripted):
    srv = scripted([("hang",)])
    t0 = time.monotonic()
    r = run(srv.port, "--greeting-timeout-ms", "300", "--do", "connect")
    el = time.monotonic() - t0
    assert r.rc_of("connect") == "SMTPC_ETIMEDOUT"
    assert r.errs["connect"] == "greeting timed out after 0.300 s"
    ms = r.steps["connect"][1]
    assert 300 <= ms < 1000, ms  # fires at the set value, not later
    assert el < 5
    assert r.connected is False


def test_overall_deadline(scripted):
    srv = scripted([GREETING, ("hang",)])
    r = run(srv.port, "--deadline-ms", "400", "--do", "connect,ehlo")
    assert r.rc_of("ehlo") == "SMTPC_ETIMEDOUT"
    assert "overall deadline of 0.400 s expired" in r.errs["ehlo"]
    assert r.steps["connect"][1] + r.steps["ehlo"][1] < 1200


def test_slow_server_beyond_command_timeout(scripted):
    srv = scripted([GREETING] + EHLO + [("expect", rb"^MAIL"), ("sleep", 3), ("send", b"250 ok\r\n")])
    r = run(srv.port, "--command-timeout-ms", "300", "--do", "connect,ehlo,mail")
    assert r.rc_of("mail") == "SMTPC_ETIMEDOUT"
    assert r.errs["mail"] == "MAIL timed out after 0.300 s"
    assert 300 <= r.steps["mail"][1] < 1000
    assert r.connected is False


def test_421_mid_session_closes(scripted):
    srv = scripted([GREETING] + EHLO + [("expect", rb"^MAIL"),
                                        ("send", b"421 4.3.2 shutting down\r\n"), ("close",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,mail,rcpt")
    assert r.rc_of("mail") == "SMTPC_ETEMPFAIL"
    assert r.replies["mail"][0] == 421
    assert "421 4.3.2 shutting down (connection closed)" in r.errs["mail"]
    assert r.connected is False


def test_421_during_pipelined_send(scripted, tmp_path):
    srv = scripted([GREETING] + EHLO + [("expect_lines", 3),
                                        ("send", b"250 ok\r\n421 4.3.2 bye\r\n"), ("close",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,send", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("send") == "SMTPC_ETEMPFAIL"
    assert "421" in r.errs["send"] and r.connected is False


def test_ehlo_refused_falls_back_to_helo(scripted):
    srv = scripted([GREETING, ("expect", rb"^EHLO "), ("send", b"502 5.5.1 what?\r\n"),
                    ("expect", rb"^HELO "), ("send", b"250 test.example\r\n"),
                    ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--do", "connect,ehlo,quit")
    assert r.rc == 0, r.out
    assert r.replies["ehlo"][0] == 250
    assert srv.wait(10) and srv.errors == []


def big_body(mb):
    line = b"x" * 76 + b"\r\n"
    return line * (mb * 1024 * 1024 // len(line))


def test_connection_dropped_during_data_is_a_failure(scripted, tmp_path):
    # The server stops reading after 354 and resets the connection: the body
    # (larger than every socket buffer on the way) cannot have been delivered.
    srv = scripted([GREETING] + EHLO + ENVELOPE + [("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                                                   ("sleep", 0.3), ("drop",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,mail,rcpt,data",
            body=big_body(24), tmp_path=tmp_path)
    assert r.rc_of("data") in ("SMTPC_ENETWORK", "SMTPC_ECLOSED"), r.out
    assert r.connected is False


@pytest.mark.parametrize("how", ["drop", "close"])
def test_connection_lost_after_final_dot_is_unknown(scripted, tmp_path, how):
    srv = scripted([GREETING] + EHLO + ENVELOPE + [("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                                                   ("expect_data",), (how,)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,mail,rcpt,data",
            body=MSG, tmp_path=tmp_path)
    assert r.rc_of("data") == "SMTPC_EUNKNOWN", r.out
    assert "may have been delivered" in r.errs["data"]
    assert srv.messages == [MSG]


def test_no_reply_after_final_dot_is_unknown(scripted, tmp_path):
    srv = scripted([GREETING] + EHLO + ENVELOPE + [("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                                                   ("expect_data",), ("hang",)])
    r = run(srv.port, "--to", "a@example.org", "--data-timeout-ms", "300",
            "--do", "connect,ehlo,mail,rcpt,data", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("data") == "SMTPC_EUNKNOWN", r.out
    assert 300 <= r.steps["data"][1] < 1000


def test_send_lost_after_final_dot_is_unknown(scripted, tmp_path):
    srv = scripted([GREETING] + EHLO + [("expect_lines", 3), ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
                                        ("expect_data",), ("drop",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,send", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("send") == "SMTPC_EUNKNOWN", r.out


def test_reply_line_over_the_limit(scripted):
    srv = scripted([("send", b"220 " + b"x" * 300 + b"\r\n"), ("hang",)])
    r = run(srv.port, "--max-line", "128", "--do", "connect")
    assert r.rc_of("connect") == "SMTPC_ELIMIT", r.out
    assert r.connected is False


def test_endless_multiline_reply_is_bounded(scripted):
    # 1 000 000 continuation lines (~60 MB) after EHLO: the client must give up
    # at its reply limit and close, with bounded memory.
    srv = scripted([GREETING, ("expect", rb"^EHLO "), ("flood", b"250-" + b"y" * 56 + b"\r\n", 1000000)])
    r = run(srv.port, "--do", "connect,ehlo")
    assert r.rc_of("ehlo") == "SMTPC_ELIMIT", r.out
    assert r.connected is False
    assert len(srv.received) < 200  # it sent nothing more


def test_endless_multiline_reply_memory(scripted):
    srv = scripted([GREETING, ("expect", rb"^EHLO "), ("flood", b"250-" + b"y" * 56 + b"\r\n", 1000000)])
    r = run(srv.port, "--do", "connect,ehlo")
    assert r.rc_of("ehlo") == "SMTPC_ELIMIT"
    if r.peak_rss_kb is None or r.peak_rss_kb < 0:
        pytest.skip("no VmHWM on this system")
    assert r.peak_rss_kb < 16 * 1024, r.peak_rss_kb  # against a 60 MB flood


def test_garbage_reply_code(scripted):
    srv = scripted([("send", b"hello, I am not an SMTP server\r\n"), ("hang",)])
    r = run(srv.port, "--do", "connect")
    assert r.rc_of("connect") == "SMTPC_EPROTO", r.out
    assert r.connected is False


def test_reply_to_nothing_is_a_protocol_violation(scripted):
    srv = scripted([("send", b"220 hi\r\n250 surprise\r\n"), ("hang",)])
    r = run(srv.port, "--do", "connect,ehlo")
    assert "SMTPC_EPROTO" in (r.steps.get("connect", ("",))[0], r.steps.get("ehlo", ("",))[0]), r.out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused():
    port = free_port()
    r = run(port, "--do", "connect")
    assert r.rc_of("connect") == "SMTPC_ENETWORK"
    assert r.errs["connect"] == "connect to 127.0.0.1:%d: Connection refused" % port


def test_unresolvable_host():
    r = run(25, "--do", "connect", host="no-such-host.invalid")
    assert r.rc_of("connect") == "SMTPC_ENOHOST"
    assert r.errs["connect"].startswith("cannot resolve no-such-host.invalid: ")


def test_cancel_while_waiting_for_greeting(scripted):
    srv = scripted([("hang",)])
    r = run(srv.port, "--cancel-after-ms", "200", "--do", "connect")
    assert r.rc_of("connect") == "SMTPC_ECANCELED"
    assert r.connected is False
    assert r.canceled_after_us is not None
    # The bound is the point: 100 ms from smtpc_session_cancel() to the return.
    assert r.canceled_after_us < 100000, r.canceled_after_us
    assert srv.wait(10) and srv.closed_by_client


def test_cancel_while_body_is_blocked(scripted, tmp_path):
    srv = scripted([GREETING] + EHLO + ENVELOPE + [("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                                                   ("sleep", 30)])
    r = run(srv.port, "--to", "a@example.org", "--cancel-after-ms", "500",
            "--do", "connect,ehlo,mail,rcpt,data", body=big_body(24), tmp_path=tmp_path)
    assert r.rc_of("data") == "SMTPC_ECANCELED", r.out
    assert r.canceled_after_us < 100000, r.canceled_after_us


def test_cancel_before_the_call_is_sticky(scripted):
    srv = scripted([GREETING, ("hang",)])
    r = run(srv.port, "--cancel-before", "--do", "connect")
    assert r.rc_of("connect") == "SMTPC_ECANCELED"
    time.sleep(0.3)
    assert srv.connections == 0  # not even a connection attempt


def test_crlf_in_address_is_einval_and_nothing_sent(scripted):
    srv = scripted([GREETING] + EHLO + [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--from", "a@example.org>\r\nRCPT TO:<victim@example.org",
            "--do", "connect,ehlo,mail,quit", "--keep-going")
    assert r.rc_of("mail") == "SMTPC_EINVAL"
    assert r.connected is False  # quit closed it normally
    assert r.rc_of("quit") == "SMTPC_OK"
    assert srv.wait(10) and srv.errors == []
    assert b"MAIL" not in srv.received and b"RCPT" not in srv.received
    srv2 = scripted([GREETING] + EHLO + [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")])
    r = run(srv2.port, "--to", "b@example.org\nDATA", "--do", "connect,ehlo,rcpt,quit", "--keep-going")
    assert r.rc_of("rcpt") == "SMTPC_EINVAL"
    assert srv2.wait(10) and srv2.errors == []
    assert b"RCPT" not in srv2.received


@pytest.mark.parametrize("name", ["bad\r\nname", "with space", ""])
def test_bad_ehlo_name_is_einval(scripted, name):
    srv = scripted([GREETING, ("hang",)])
    r = run(srv.port, "--ehlo", name, "--do", "connect,ehlo")
    assert r.steps["set_ehlo_name"][0] == "SMTPC_EINVAL"
    assert "connect" not in r.steps


def test_server_closes_before_reply_no_sigpipe(scripted, tmp_path):
    # The server resets as soon as it has the envelope; the client goes on
    # writing a large body into a dead socket: EPIPE, never SIGPIPE (the
    # driver keeps the default SIGPIPE action, which would kill it).
    srv = scripted([GREETING] + EHLO + ENVELOPE + [("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                                                   ("drop",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,mail,rcpt,data",
            body=big_body(24), tmp_path=tmp_path)
    assert r.rc == 1
    assert r.rc_of("data") in ("SMTPC_ENETWORK", "SMTPC_ECLOSED")


def test_server_refuses_in_the_middle_of_data(scripted, tmp_path):
    # A server that gives up on a body (552 too big) and closes: the client
    # reports the server's words, not just "connection reset".
    srv = scripted([GREETING] + EHLO + ENVELOPE + [("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                                                   ("expect_lines", 2),
                                                   ("send", b"552 5.3.4 message too big\r\n"),
                                                   ("sleep", 0.2), ("close",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,mail,rcpt,data",
            body=big_body(24), tmp_path=tmp_path)
    assert r.rc_of("data") == "SMTPC_EPERMFAIL", r.out
    assert r.replies["data"][0] == 552
    assert "server replied 552 5.3.4 message too big (connection closed)" in r.errs["data"]
    assert r.connected is False


def test_bind_local_address(scripted):
    # The whole 127/8 is local on Linux: bind the client to 127.0.0.2.
    srv = scripted([GREETING] + EHLO + [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--bind", "127.0.0.2", "--do", "connect,ehlo,quit")
    assert r.rc == 0, r.out
    assert srv.wait(10) and srv.peers[0][0] == "127.0.0.2"
    assert srv.lines[0] == b"EHLO [127.0.0.2]" or b"." in srv.lines[0]  # the literal of our end


def test_354_to_a_refused_transaction_is_never_ended(scripted, tmp_path):
    # MAIL refused but RCPT accepted and 354 to the pipelined DATA (a broken
    # server): any end of data would deliver an empty message, so the client
    # must drop the connection without sending another byte.
    srv = scripted([GREETING] + EHLO + [("expect_lines", 3),
                                        ("send", b"550 5.7.1 no\r\n250 ok\r\n354 go\r\n"), ("hang",)])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,send", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("send") == "SMTPC_EPERMFAIL", r.out
    assert "connection closed" in r.errs["send"]
    assert r.connected is False
    assert srv.wait(10) and srv.closed_by_client
    assert srv.received.endswith(b"DATA\r\n"), bytes(srv.received)


def test_connect_by_name(scripted):
    srv = scripted([GREETING] + EHLO + [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--do", "connect,ehlo,quit", host="localhost")
    assert r.rc == 0, r.out


def test_421_while_idle_is_reported_by_the_next_command(scripted):
    # The server shuts down between commands (RFC 5321 §3.8): the next
    # command gets the 421, not a bare "connection closed".
    srv = scripted([GREETING] + EHLO + [("send", b"421 4.3.2 going down\r\n"), ("close",)])
    r = run(srv.port, "--do", "connect,ehlo,noop")
    assert r.rc_of("noop") == "SMTPC_ETEMPFAIL", r.out
    assert r.replies["noop"][0] == 421
    assert r.connected is False
