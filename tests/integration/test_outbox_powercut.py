"""A power cut at every file-system operation of the outbox: what is on disk
afterwards is an old or a new state, never half of one.

powercut_shim.c (LD_PRELOAD, built here) counts the operations smtpc makes
under the outbox directory (create, write, fsync, rename, unlink) across a
workload of commands (adds, flushes with 250 / 451 / 550, retry, drop). For
each cut point k the workload is run again from scratch and the shim, just
before operation k, copies the directory and writes a journal of what a cut
could lose there: data written since the file's last fsync, and directory
entry operations (create, rename, unlink) since the last fsync of their
directory. From that copy the test builds every state a journalling file
system could leave (unsynced data dropped; the pending entry operations
undone from the last back, each prefix in turn) and asserts on each:
  - `smtpc queue check` finds nothing damaged (leftover temporaries and
    orphaned states are what a crash may leave); --repair then makes it
    consistent;
  - every message in queue/ and failed/ is whole (its last line is there)
    and appears once; `queue list` reads them all;
  - no message is lost: each whose add had returned, not yet accepted by
    the server and not being dropped, is there.
And after every command that ran to its end, nothing but state-file
unlinks and temporaries is left unsynced: every rename and message removal
was followed by an fsync of its directory.

Quick by default (every third cut point); SMTPC_CRASH_FULL=1 (make
check-crash) takes every point."""
import json
import os
import re
import shutil
import subprocess

from conftest import BUILD_DIR, SOURCE_DIR
from test_cli_queue import clean_env
from test_outbox_crash import FULL, RecordingSink, figures

STEP = 1 if FULL else 3


def build_shim(tmp_path):
    """The LD_PRELOAD value: the shim, after the sanitizer runtime of an
    ASan build (which must come first)."""
    so = tmp_path / "powercut.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(so),
                    str(SOURCE_DIR / "tests" / "integration" / "powercut_shim.c"), "-ldl"],
                   check=True, capture_output=True, timeout=120)
    ldd = subprocess.run(["ldd", str(BUILD_DIR / "smtpc")], capture_output=True, text=True, timeout=60).stdout
    rt = re.search(r"(\S*libasan\.so\S*) => (\S+)", ldd)
    return f"{rt.group(2)} {so}" if rt else str(so)


# attempt n of each message (by subject) gets replies[n] (the last one after)
REPLIES = {"pc-A": [b"250 2.0.0 ok\r\n"],
           "pc-B": [b"451 4.3.0 later\r\n", b"550 5.7.1 no\r\n", b"250 2.0.0 ok\r\n"],
           "pc-C": [b"250 2.0.0 ok\r\n"],
           "pc-D": [b"250 2.0.0 ok\r\n"]}


def workload(port):
    srv = ["--server", f"127.0.0.1:{port}", "--tls", "none"]

    def add(x):
        return ("add", x, ["send", "--from", "a@example.org", "--to", "b@example.org", "--subject", x,
                           "--text", f"body of {x}\n" * 50 + f"END {x}", "--outbox", "ob"])
    return [add("pc-A"), add("pc-B"),
            ("flush", None, ["queue", "flush", "--outbox", "ob", *srv]),  # A sent, B deferred
            add("pc-C"),
            ("retry", None, ["queue", "retry", "--outbox", "ob"]),        # B and C due now
            ("flush", None, ["queue", "flush", "--outbox", "ob", *srv]),  # B to failed/, C sent
            ("retry-B", "pc-B", ["queue", "retry", "--outbox", "ob"]),    # B back from failed/
            ("flush", None, ["queue", "flush", "--outbox", "ob", *srv]),  # B sent
            add("pc-D"),
            ("drop", "pc-D", None)]


def sink():
    tries = {}

    def reply(token):
        n = tries.get(token, 0)
        tries[token] = n + 1
        r = REPLIES[token]
        return r[min(n, len(r) - 1)]
    return RecordingSink(delay_ms=(0, 0), reply=reply)


def msg_files(ob):
    """{subject: [paths]} of the .msg files in queue/ and failed/."""
    out = {}
    for sub in ("queue", "failed"):
        for n in sorted(os.listdir(ob / sub)):
            if n.endswith(".msg"):
                data = (ob / sub / n).read_bytes()
                m = re.search(rb"^Subject: (\S+)", data, re.M)
                assert m, f"{sub}/{n}: no subject"
                subj = m.group(1).decode()
                assert f"END {subj}".encode() in data[-40:], f"{sub}/{n}: cut short"
                out.setdefault(subj, []).append(f"{sub}/{n}")
    return out


def run_workload(smtpc_bin, cwd, shim, at, port):
    """Runs the workload with a cut at operation `at` (0: none). Returns the
    names of the adds that returned and whether a cut happened, and where."""
    env = clean_env(cwd)
    env.update(LD_PRELOAD=shim, PC_DIR=str(cwd / "ob"), PC_AT=str(at), PC_COUNTER=str(cwd / "counter"),
               PC_SNAP=str(cwd / "snap"), PC_STASH=str(cwd / "stash"), PC_END_JOURNAL=str(cwd / "end.journal"))
    (cwd / "stash").mkdir()
    added, started = [], []
    for kind, x, args in workload(port):
        started.append((kind, x))
        if kind == "drop":  # the entry id of D
            ids = [p.split("/")[1][:-4] for p in msg_files(cwd / "ob").get("pc-D", [])]
            args = ["queue", "drop", *ids[:1], "--outbox", "ob"]
        elif kind == "retry-B":
            ids = [p.split("/")[1][:-4] for p in msg_files(cwd / "ob").get("pc-B", [])]
            args = ["queue", "retry", *ids[:1], "--outbox", "ob"]
        r = subprocess.run([smtpc_bin, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        if r.returncode == 77:
            return added, started, True
        assert r.returncode in (0, 69, 75), f"{args}: {r.returncode} {r.stderr}"
        if kind == "add":
            added.append(x)
    return added, started, False


def states(snap_dir, journal):
    """Every state a cut could leave: yields (name, directory)."""
    lines = journal.read_text().splitlines()
    assert lines and lines[-1] == "end"
    dirty = [l.split() for l in lines if l.startswith("dirty ")]
    ops = [l.split() for l in lines if l.split()[0] in ("create", "rename", "unlink")]
    base = snap_dir.parent / "base"
    shutil.copytree(snap_dir, base / "ob", symlinks=True)
    for _, path, size in dirty:  # data not yet synced is lost
        p = base / "ob" / path
        if p.exists():
            os.truncate(p, int(size))
    for undo in range(len(ops) + 1):
        d = snap_dir.parent / f"v{undo}"
        shutil.copytree(base, d, symlinks=True)
        ob = d / "ob"
        for op in reversed(ops[len(ops) - undo:]):
            if op[0] == "create":
                if (ob / op[1]).exists():
                    os.unlink(ob / op[1])
            elif op[0] == "rename":
                if (ob / op[2]).exists():
                    os.rename(ob / op[2], ob / op[1])
                if op[3] != "-":
                    shutil.copy2(op[3], ob / op[2])
            elif op[0] == "unlink" and op[2] != "-":
                shutil.copy2(op[2], ob / op[1])
        yield f"{undo} of {len(ops)} undone", d


def check(smtpc_bin, cwd, *extra):
    r = subprocess.run([smtpc_bin, "queue", "check", "--outbox", "ob", "--json", *extra], cwd=cwd,
                       env=clean_env(cwd), capture_output=True, text=True, timeout=60)
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert lines, r.stderr
    return r.returncode, lines[:-1], lines[-1]


def test_power_cut_at_every_operation(smtpc_bin, tmp_path):
    shim = build_shim(tmp_path)
    # a run without a cut: how many operations, and what is left unsynced
    # when each command has ended
    ref = tmp_path / "ref"
    ref.mkdir()
    subprocess.run([smtpc_bin, "queue", "list", "--outbox", "ob"], cwd=ref, env=clean_env(ref), check=True)
    srv = sink()
    try:
        added, _, cut = run_workload(smtpc_bin, ref, shim, 0, srv.port)
    finally:
        srv.stop()
    assert not cut and added == ["pc-A", "pc-B", "pc-C", "pc-D"]
    assert sorted(srv.received) == ["pc-A", "pc-B", "pc-C"]
    assert msg_files(ref / "ob") == {}
    total = int((ref / "counter").read_text())
    for l in (ref / "end.journal").read_text().splitlines():
        op = l.split()
        assert op[0] in ("end", "create", "unlink", "dirty") or op[0] == "rename" and op[2].startswith("tmp/"), \
            f"left unsynced at a command's end: {l}"
        if op[0] == "unlink":
            assert op[1].endswith(".state") or op[1].startswith("tmp/"), f"removal not synced: {l}"
        if op[0] == "create":
            assert op[1].startswith("tmp/") or op[1] == "lock", f"creation not synced: {l}"

    points = states_seen = leftovers = orphans = 0
    for at in range(1, total + 1, STEP):
        cwd = tmp_path / f"cut{at}"
        cwd.mkdir()
        subprocess.run([smtpc_bin, "queue", "list", "--outbox", "ob"], cwd=cwd, env=clean_env(cwd), check=True)
        srv = sink()
        try:
            added, started, cut = run_workload(smtpc_bin, cwd, shim, at, srv.port)
        finally:
            srv.stop()
        assert cut, f"no cut at operation {at} of {total}"
        points += 1
        accepted = set(srv.received)
        dropping = {x for kind, x in started if kind == "drop"}
        must = set(added) - accepted - dropping
        for name, d in states(cwd / "snap", cwd / "snap.journal"):
            where = f"cut at operation {at} of {total} ({started[-1][0]} {started[-1][1] or ''}), {name}"
            states_seen += 1
            ex, found, summary = check(smtpc_bin, d)
            assert summary["damaged"] == 0, (where, found)
            assert ex == (4 if found else 0), (where, ex, found)
            leftovers += summary["leftovers"]
            orphans += summary["orphans"]
            files = msg_files(d / "ob")
            assert all(len(v) == 1 for v in files.values()), (where, files)
            assert must <= set(files), (where, "lost", must - set(files), srv.received, added)
            ex, _, _ = check(smtpc_bin, d, "--repair")
            assert ex in (0, 1) and check(smtpc_bin, d)[0] == 0, where
            r = subprocess.run([smtpc_bin, "queue", "list", "--outbox", "ob", "--json"], cwd=d,
                               env=clean_env(d), capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and len(r.stdout.splitlines()) == len(files), (where, r.stderr)
        shutil.rmtree(cwd)
    figures(f"power-cut figures: operations in the workload {total}, cut points {points}, "
            f"states examined {states_seen}, damaged 0, lost 0, half-written 0, "
            f"check found leftovers {leftovers}, orphaned states {orphans}")


def test_add_fails_when_the_directory_cannot_be_synced(smtpc_bin, tmp_path):
    """An add whose queue/ fsync fails is not "durable on return": it fails
    (exit 74) and leaves no entry behind."""
    shim = build_shim(tmp_path)
    subprocess.run([smtpc_bin, "queue", "list", "--outbox", "ob"], cwd=tmp_path, env=clean_env(tmp_path),
                   check=True)
    env = clean_env(tmp_path)
    env.update(LD_PRELOAD=shim, PC_DIR=str(tmp_path / "ob"), PC_FAIL_DIRSYNC="1")
    r = subprocess.run([smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org", "--subject", "x",
                        "--text", "y", "--outbox", "ob"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 74 and "fsync" in r.stderr, (r.returncode, r.stderr)
    assert os.listdir(tmp_path / "ob" / "queue") == []
