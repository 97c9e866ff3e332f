"""smtpc queue check [--repair]: the leftovers a crash can leave in an outbox
(temporary files of a dead writer, state files whose message is gone) are
found and removed; damaged files are moved into damaged/, never deleted; a
running writer's temporary files are left alone; exit 0 / 1 / 4 as fsck."""
import fcntl
import json
import os
import subprocess

from test_cli_queue import clean_env, smtpc
from test_outbox_crash import RecordingSink


def queue_some(smtpc_bin, tmp_path, n=2):
    for i in range(n):
        r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org",
                  "--subject", f"m{i}", "--text", "body", "--outbox", "ob")
        assert r.returncode == 0, r.stderr
    return sorted(p.name for p in (tmp_path / "ob" / "queue").iterdir())


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def check(smtpc_bin, tmp_path, *extra):
    r = smtpc(smtpc_bin, tmp_path, "queue", "check", "--outbox", "ob", "--json", *extra)
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    return r.returncode, lines[:-1], lines[-1] if lines else None


def test_clean_outbox_is_consistent(smtpc_bin, tmp_path):
    queue_some(smtpc_bin, tmp_path)
    r = smtpc(smtpc_bin, tmp_path, "queue", "check", "--outbox", "ob")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("consistent: 2 entries")


def test_crash_leftovers_found_then_repaired(smtpc_bin, tmp_path):
    names = queue_some(smtpc_bin, tmp_path)
    ob = tmp_path / "ob"
    pid = dead_pid()
    # an add killed before its rename; a state update killed before its rename
    (ob / "tmp" / f"1765000000000000-{pid}-7.msg").write_bytes(b"smtpc-outbox 1\nfrom a@example.org\n")
    (ob / "tmp" / f"{names[0][:-4]}.state.{pid}-3.tmp").write_bytes(b"attempts 1\n")
    # a removal killed between its two unlinks
    (ob / "queue" / "1765000000000000-1-1.state").write_bytes(b"attempts 1\nnext 0\nerror \n")
    ex, found, summary = check(smtpc_bin, tmp_path)
    assert ex == 4
    assert summary == {"ok": False, "entries": 2, "in_progress": 0, "leftovers": 2, "orphans": 1,
                       "damaged": 0, "repaired": 0}
    assert {f["path"] for f in found} == {f"tmp/1765000000000000-{pid}-7.msg",
                                          f"tmp/{names[0][:-4]}.state.{pid}-3.tmp",
                                          "queue/1765000000000000-1-1.state"}
    assert len(os.listdir(ob / "tmp")) == 2  # without --repair nothing changes
    ex, found, summary = check(smtpc_bin, tmp_path, "--repair")
    assert ex == 1 and summary["repaired"] == 3 and all(f["repaired"] for f in found)
    assert os.listdir(ob / "tmp") == []
    assert sorted(os.listdir(ob / "queue")) == names
    assert check(smtpc_bin, tmp_path)[0] == 0


def test_running_writer_left_alone(smtpc_bin, tmp_path):
    queue_some(smtpc_bin, tmp_path, 1)
    t = tmp_path / "ob" / "tmp" / f"1765000000000000-{os.getpid()}-1.msg"
    t.write_bytes(b"half")
    ex, found, summary = check(smtpc_bin, tmp_path, "--repair")
    assert ex == 0 and found == [] and summary["in_progress"] == 1
    assert t.exists()


def test_damaged_moved_aside_never_deleted(smtpc_bin, tmp_path):
    names = queue_some(smtpc_bin, tmp_path)
    ob = tmp_path / "ob"
    bad = ob / "queue" / "1765000000000000-1-2.msg"
    bad.write_bytes(b"not an outbox message\n")
    (ob / "queue" / "1765000000000000-1-2.state").write_bytes(b"attempts 1\nnext 0\nerror \n")
    (ob / "queue" / f"{names[1][:-4]}.state").write_bytes(b"attempts x\n")  # unreadable state
    (ob / "failed" / "notes.txt").write_bytes(b"mine")
    ex, found, summary = check(smtpc_bin, tmp_path)
    assert ex == 4 and summary["damaged"] == 3 and summary["orphans"] == 0
    ex, found, summary = check(smtpc_bin, tmp_path, "--repair")
    assert ex == 1, found
    assert sorted(os.listdir(ob / "damaged")) == sorted([
        "queue.1765000000000000-1-2.msg", "queue.1765000000000000-1-2.state",
        f"queue.{names[1][:-4]}.state", "failed.notes.txt"])
    assert (ob / "damaged" / "queue.1765000000000000-1-2.msg").read_bytes() == b"not an outbox message\n"
    assert sorted(os.listdir(ob / "queue")) == names
    assert check(smtpc_bin, tmp_path)[0] == 0
    r = smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob", "--json")
    assert len(r.stdout.splitlines()) == 2


def test_check_waits_for_no_flush(smtpc_bin, tmp_path):
    queue_some(smtpc_bin, tmp_path, 1)
    with open(tmp_path / "ob" / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        r = smtpc(smtpc_bin, tmp_path, "queue", "check", "--outbox", "ob")
    assert r.returncode == 75 and "another flush" in r.stderr


def test_repair_only_with_check(smtpc_bin, tmp_path):
    r = subprocess.run([smtpc_bin, "queue", "list", "--repair", "--outbox", "ob"], cwd=tmp_path,
                       capture_output=True, env=clean_env(tmp_path), timeout=60)
    assert r.returncode == 64


def test_flush_goes_past_a_damaged_entry(smtpc_bin, tmp_path):
    """A damaged message (sorted first) is kept and counted deferred; the
    others are sent; check --repair then moves it aside."""
    queue_some(smtpc_bin, tmp_path, 2)
    (tmp_path / "ob" / "queue" / "0000000000000000-1-1.msg").write_bytes(b"garbage\n")
    srv = RecordingSink(delay_ms=(0, 0), tempfail=0)
    try:
        r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
                  "--tls", "none")
    finally:
        srv.stop()
    assert r.returncode == 75 and "sent 2, deferred 1" in r.stdout, (r.stdout, r.stderr)
    assert sorted(os.listdir(tmp_path / "ob" / "queue")) == ["0000000000000000-1-1.msg"]
    assert check(smtpc_bin, tmp_path, "--repair")[0] == 1
    assert os.listdir(tmp_path / "ob" / "queue") == []


def test_repair_while_adding_removes_nothing_live(smtpc_bin, tmp_path):
    """Adds take no lock: a check --repair running meanwhile sees their
    temporary files and must leave them (their writer runs), so every add
    succeeds and ends up queued."""
    import threading
    queue_some(smtpc_bin, tmp_path, 1)
    stop = threading.Event()
    results = []

    def adder(k):
        for i in range(15):
            r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org",
                      "--subject", f"t{k}-{i}", "--text", "x\n" * 20000, "--outbox", "ob")
            results.append(r.returncode)
    threads = [threading.Thread(target=adder, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    checks = in_progress = 0
    while any(t.is_alive() for t in threads):
        ex, found, summary = check(smtpc_bin, tmp_path, "--repair")
        assert ex == 0 and not found, found
        checks += 1
        in_progress += summary["in_progress"]
    for t in threads:
        t.join()
    assert results == [0] * 45
    assert len(os.listdir(tmp_path / "ob" / "queue")) == 46
    assert checks > 0
    print(f"checks {checks}, in progress seen {in_progress}")
    assert check(smtpc_bin, tmp_path)[0] == 0
