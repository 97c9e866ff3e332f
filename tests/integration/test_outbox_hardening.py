"""The outbox's files and directories (issue 14, item 4): retry and drop take
the lock a flush holds (EBUSY, exit 75, while it runs) instead of racing it
on the same entry; state files are written through new, exclusively created
temporary files (a link planted under a temporary name is never followed);
a directory others can write into is refused, for the outbox and for a
pickup directory; orphaned .state files are removed."""
import json
import os
import subprocess
import time

import pytest

from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.scripted import scripted  # noqa: F401


def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    return env


def smtpc(smtpc_bin, tmp_path, *args, wait=True):
    argv = [smtpc_bin, *args]
    if not wait:
        return subprocess.Popen(argv, cwd=tmp_path, env=clean_env(tmp_path), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=60, env=clean_env(tmp_path), text=True)


def queue_one(smtpc_bin, tmp_path, to="b@example.org", ob="ob"):
    r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", to, "--text", "x", "--outbox", ob)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().rsplit("/", 1)[1][:-len(".msg")]


def entries(smtpc_bin, tmp_path, ob="ob"):
    r = smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", ob, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_retry_and_drop_wait_for_a_running_flush(smtpc_bin, tmp_path, scripted):
    mid = queue_one(smtpc_bin, tmp_path)
    # the server holds the end-of-data reply: the flush is in the middle of this entry
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
                    ("expect", rb"^MAIL "), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT "),
                    ("send", b"250 ok\r\n"), ("expect", rb"^DATA"), ("send", b"354 go\r\n"),
                    ("expect_data",), ("sleep", 3), ("send", b"250 queued\r\n"),
                    ("expect", rb"^QUIT"), ("send", b"221 bye\r\n"), ("close",)])
    flush = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
                  "--tls", "none", wait=False)
    deadline = time.monotonic() + 30
    while not srv.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.messages, "the flush did not send"
    for args in (("drop", mid), ("retry", mid), ("retry",)):
        r = smtpc(smtpc_bin, tmp_path, "queue", *args, "--outbox", "ob")
        assert r.returncode == 75, (args, r.returncode, r.stderr)
        assert "another flush is running" in r.stderr
    out, err = flush.communicate(timeout=60)
    assert flush.returncode == 0, err
    assert out == "sent 1, deferred 0, failed 0, not due 0\n"
    assert entries(smtpc_bin, tmp_path) == []
    assert len(srv.messages) == 1
    # and without a flush they work as before
    mid = queue_one(smtpc_bin, tmp_path)
    assert smtpc(smtpc_bin, tmp_path, "queue", "retry", "--outbox", "ob").returncode == 0
    assert smtpc(smtpc_bin, tmp_path, "queue", "drop", mid, "--outbox", "ob").returncode == 0
    assert entries(smtpc_bin, tmp_path) == []


def test_a_link_planted_at_a_temporary_name_is_not_followed(smtpc_bin, tmp_path, aiosmtpd):
    mid = queue_one(smtpc_bin, tmp_path, to="later@example.org")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # the name the state file's temporary had: predictable, opened with O_TRUNC
    os.symlink(victim, tmp_path / "ob" / "tmp" / f"{mid}.state.tmp")
    srv = aiosmtpd(tempfail={"later@example.org"})
    r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
              "--tls", "none")
    assert r.returncode == 75, r.stderr  # deferred: its state written
    assert victim.read_text() == "precious\n"
    state = tmp_path / "ob" / "queue" / f"{mid}.state"
    assert not state.is_symlink() and "attempts 1" in state.read_text()
    [e] = entries(smtpc_bin, tmp_path)
    assert e["attempts"] == 1 and "450" in e["last_error"]


@pytest.mark.parametrize("sub", ["", "queue", "tmp"])
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_outbox_others_can_write_is_refused(smtpc_bin, tmp_path, sub, mode):
    queue_one(smtpc_bin, tmp_path)
    d = tmp_path / "ob" / sub
    os.chmod(d, mode)
    r = smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob")
    assert r.returncode == 78, r.stderr
    assert "writable by group or others" in r.stderr
    r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org", "--text", "x",
              "--outbox", "ob")
    assert r.returncode == 78, r.stderr
    os.chmod(d, 0o700)
    assert len(entries(smtpc_bin, tmp_path)) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_outbox_of_another_user_is_refused(smtpc_bin, tmp_path):
    queue_one(smtpc_bin, tmp_path)
    os.chown(tmp_path / "ob", 65534, 65534)
    r = smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob")
    assert r.returncode == 78 and "owned by another user" in r.stderr, r.stderr


@pytest.mark.parametrize("mode,ok", [(0o777, False), (0o1777, True), (0o770, True), (0o755, True)])
def test_pickup_directory_rule(smtpc_bin, tmp_path, mode, ok):
    d = tmp_path / "pickup"
    d.mkdir()
    os.chmod(d, mode)
    r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org", "--text", "x",
              "--pickup-dir", "pickup")
    if ok:
        assert r.returncode == 0, r.stderr
        assert len([p for p in os.listdir(d) if p.endswith(".eml")]) == 1
    else:
        assert r.returncode == 78, r.stderr
        assert "writable by others without the sticky bit" in r.stderr
        assert os.listdir(d) == []


def test_orphaned_state_files_are_removed(smtpc_bin, tmp_path, aiosmtpd):
    mid = queue_one(smtpc_bin, tmp_path, to="later@example.org")
    q, f = tmp_path / "ob" / "queue", tmp_path / "ob" / "failed"
    (q / "1234-orphan.state").write_text("attempts 3\nnext 0\nerror x\n")
    (f / "5678-orphan.state").write_text("attempts 3\nnext 0\nerror x\n")
    srv = aiosmtpd(tempfail={"later@example.org"})
    r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
              "--tls", "none")
    assert r.returncode == 75, r.stderr
    assert sorted(os.listdir(q)) == sorted([f"{mid}.msg", f"{mid}.state"])  # the orphan is gone, not the entry's
    assert (f / "5678-orphan.state").exists()  # flush looks at queue/ only
    assert smtpc(smtpc_bin, tmp_path, "queue", "retry", "--outbox", "ob").returncode == 0
    assert os.listdir(f) == []
