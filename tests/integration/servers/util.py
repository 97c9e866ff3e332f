"""Small helpers shared by the real-server fixtures: free ports, waiting for a
listener, starting/stopping processes, temp dirs.

    from servers.util import free_port, free_ports, wait_for_port, start_process, stop_process

- ``free_port(host)`` / ``free_ports(n, host)``: loopback ports that were free a
  moment ago (distinct when asked together). There is an unavoidable race with
  other processes; our servers retry on a fresh port when the bind fails.
- ``port_open(port, host)``; ``wait_for_port(port, host, timeout, proc=..., log=...)``:
  poll-connect every 20 ms until the port accepts; raises early, with the
  process's log, when ``proc`` has exited.
- ``start_process(argv, log=path)`` → Popen in its own session (so the whole
  process group can be killed), guarded by a ``watchdog`` that kills the group
  if the test process dies (even by SIGKILL); ``stop_process(p)`` TERMs the
  group, then KILLs what lingers, and disarms the watchdog.
- ``watchdog(pgid)`` / ``stop_watchdog(handle)`` for servers that daemonize.
- ``make_tempdir(prefix)``: a 0755 /tmp/smtpc-<prefix>-XXXX (unprivileged
  daemons such as Postfix's must traverse it) with ``owner.pid``; dirs of dead
  owners are reaped on the next call (``stale_tempdirs``); ``remove_tree(path)``.
- ``pid_alive(pid)``: zombies count as dead (PID 1 here does not reap orphans).
- ``shared_instance(key, create, close)``: one instance per process for session
  fixtures imported into several test modules.
- ``run(argv)``: subprocess.run with check, timeout and the output in the error;
  ``require(path, package)``: clear error when a server package is missing.
"""
import contextlib
import glob
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


_WATCHDOG = r"""
pg=$1
read _ignored          # returns at EOF: the test process closed the pipe or died
kill -TERM -"$pg" 2>/dev/null || exit 0
sleep 2
kill -KILL -"$pg" 2>/dev/null
exit 0
"""


def watchdog(pgid):
    """Kill process group pgid when this (test) process goes away, even by SIGKILL.

    Servers run in their own session so a test can kill them as a group, which
    also means nothing kills them if pytest is killed (ctest timeout). The kernel's
    PR_SET_PDEATHSIG does not help: it is cleared when a server switches user
    (tinyproxy, danted, postfix). So a tiny sh process, in its own session, waits
    for EOF on a pipe only we hold and then TERMs (2 s later KILLs) the group.
    Returns a handle for stop_watchdog (call it after stopping the group yourself)."""
    r, w = os.pipe()
    os.set_inheritable(w, False)
    try:
        p = subprocess.Popen(["/bin/sh", "-c", _WATCHDOG, "watchdog", str(pgid)], stdin=r,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
    finally:
        os.close(r)
    return (p, w)


def stop_watchdog(handle):
    """Disarm a watchdog: kill it first (so it never signals a reused pgid), then
    close its pipe."""
    if handle is None:
        return
    p, w = handle
    with contextlib.suppress(OSError):
        p.kill()
    with contextlib.suppress(Exception):
        p.wait(5)
    with contextlib.suppress(OSError):
        os.close(w)


def start_process(argv, log=None, env=None, cwd=None):
    """Start argv in a new session; stdout+stderr go to the file `log` (or /dev/null).
    A watchdog kills its process group if the test process dies."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)
    finally:
        if log:
            out.close()
    proc.watchdog = watchdog(proc.pid)
    return proc


def stop_process(proc, timeout=5.0):
    """TERM the process group of proc, then KILL it if it lingers. Idempotent."""
    if proc is None:
        return
    if proc.poll() is not None:
        stop_watchdog(getattr(proc, "watchdog", None))
        proc.watchdog = None
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
        # children that outlived the leader (e.g. danted's) get the KILL below too
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout)
    stop_watchdog(getattr(proc, "watchdog", None))
    proc.watchdog = None


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


def pid_alive(pid):
    """True if pid runs (a zombie, e.g. under a PID 1 that does not reap, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stale_tempdirs(prefix):
    """Temp dirs made by make_tempdir(prefix) whose owning process is gone."""
    out = []
    for d in glob.glob(os.path.join(tempfile.gettempdir(), f"smtpc-{prefix}-*")):
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                owner = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if not pid_alive(owner):
            out.append(d)
    return out


def make_tempdir(prefix, reap=True):
    """A 0755 temp dir /tmp/smtpc-<prefix>-XXXX recording its owner's pid; with
    reap, first removes such dirs left behind by dead test processes."""
    if reap:
        for old in stale_tempdirs(prefix):
            remove_tree(old)
    d = tempfile.mkdtemp(prefix=f"smtpc-{prefix}-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "owner.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
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


def require(path, package):
    """Fail with a useful message when a server binary is missing."""
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not found: install Debian package {package} "
                           f"(scripts/deps.sh test installs scripts/deps/*.txt)")
    return path
