"""Small helpers shared by the real-server fixtures: free ports, waiting for a
listener, starting/stopping processes, temp dirs.

    from servers.util import free_port, free_ports, wait_for_port, start_process, stop_process

- ``free_port(host)`` / ``free_ports(n, host)``: loopback ports that were free a
  moment ago (distinct when asked together). There is an unavoidable race with
  other processes; servers started on them fail loudly (see wait_for_port).
- ``wait_for_port(port, host, timeout, proc=...)``: poll-connect until the port
  accepts; raises early with the process's log when ``proc`` has exited.
- ``start_process(argv, log=path)`` → Popen in its own session (so the whole
  process group can be killed); ``stop_process(p)`` TERM, then KILL.
- ``make_tempdir(prefix)``: a 0755 temp dir (unprivileged daemons such as
  Postfix's must traverse it); ``remove_tree(path)``.
- ``run(argv)``: subprocess.run with check, timeout and the output in the error.
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_ports(n, host="127.0.0.1"):
    """n distinct ports that are free on host right now (sockets are held open
    until all are chosen, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(_family(host), socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


def port_open(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_log(path, limit=4000):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-limit:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def wait_for_port(port, host="127.0.0.1", timeout=30.0, proc=None, log=None, what="server"):
    """Wait until host:port accepts TCP connections. Fails early if proc died."""
    deadline = time.monotonic() + timeout
    while True:
        if port_open(port, host):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on "
                               f"{host}:{port}\n{read_log(log) if log else ''}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not listening on {host}:{port} after {timeout}s\n"
                               f"{read_log(log) if log else ''}")
        time.sleep(0.02)


def start_process(argv, log=None, env=None, cwd=None):
    """Start argv in a new session; stdout+stderr go to the file `log` (or /dev/null)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)
    finally:
        if log:
            out.close()


def stop_process(proc, timeout=5.0):
    """TERM the process group of proc, then KILL it if it lingers. Idempotent."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout)


def kill_pidfile(path, sig=signal.SIGTERM, timeout=5.0):
    """Signal the process whose pid is in `path` (for self-daemonizing servers)."""
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def make_tempdir(prefix):
    d = tempfile.mkdtemp(prefix=f"smtpc-{prefix}-")
    os.chmod(d, 0o755)
    return d


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def run(argv, timeout=60, input=None, check=True, env=None):
    r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {' '.join(map(str, argv))}\n"
                           f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    return r


_SHARED = {}


@contextlib.contextmanager
def shared_instance(key, create, close):
    """One instance per process for session fixtures.

    A fixture imported into several test modules is a separate fixture per
    module for pytest, so when one pytest process runs several files each
    would get its own "session" instance. This shares one (reference counted;
    closed when the last user finalizes, i.e. at the end of the session)."""
    ent = _SHARED.get(key)
    if ent is None:
        ent = _SHARED[key] = [create(), 0]
    ent[1] += 1
    try:
        yield ent[0]
    finally:
        ent[1] -= 1
        if ent[1] == 0:
            del _SHARED[key]
            close(ent[0])
