"""A scripted SMTP server for fault and hostile-server tests.

The server listens on a free 127.0.0.1 port (or ::1) and plays a script, a
list of steps, to each accepted connection (one connection by default)::

    from servers.scripted import scripted  # noqa: F401

    def test_x(scripted):
        srv = scripted([
            ("send", b"220 hello\\r\\n"),
            ("expect", rb"^EHLO \\S+$"),          # one line, regex on the line without CRLF
            ("send", b"250-hi\\r\\n250 PIPELINING\\r\\n"),
            ("expect", rb"^MAIL FROM:<a@x>"),
            ("send", b"250 ok\\r\\n"),
            ("expect_data",),                    # body up to "\\r\\n.\\r\\n" (stored, un-stuffed)
            ("send", b"250 queued\\r\\n"),
            ("drop",),                           # RST instead of an answer
        ])
        ... run a client against srv.port ...
        srv.wait()                               # the script has finished (or failed)
        assert srv.errors == []
        assert srv.messages == [b"Subject: x\\r\\n\\r\\nbody\\r\\n"]

Steps:
  ("send", bytes)           write bytes (may be a partial line, or several replies)
  ("send_slowly", bytes, s) write one byte at a time, sleeping s between bytes
  ("expect", regex)         read one line (up to LF) and match the regex against it
                            with the CRLF stripped; a mismatch is recorded in
                            srv.errors and ends the script (connection closed)
  ("expect_lines", n)       read n lines, whatever they are (recorded)
  ("expect_data",)          read a DATA body up to the final ".", un-dot-stuff it,
                            append it to srv.messages (raw bytes in srv.raw_data)
  ("count_data",)           read a DATA body up to the final "." without keeping it
                            (for huge bodies; not in srv.received either): its size, dot-stuffing and final
                            ".\r\n" included, goes to srv.data_sizes
  ("expect_bdat", reply)    read BDAT chunks, answering each with `reply`, until
                            the one marked LAST; the joined chunks go to
                            srv.messages and each chunk size to srv.bdat_sizes
  ("sleep", seconds)        pause
  ("close",)                orderly close (FIN) and end of script
  ("drop",)                 abortive close (RST, SO_LINGER 0) and end of script
  ("hang",)                 answer nothing any more; keep reading (recorded) until
                            the client closes or the server stops
  ("flood", bytes, n)       send bytes n times (or until the client goes away)
When the script ends without close/drop, the server keeps reading and
recording until the client closes.

Recorded (thread-safe to read after srv.wait()):
  srv.received     every byte the client sent, in order (bytes)
  srv.lines        the lines consumed by expect steps (bytes, CRLF stripped)
  srv.chunks       the result of each recv() (bytes): a rough view of how the
                   client grouped its writes (a pipelined group sent in one
                   write normally arrives in one chunk on loopback)
  srv.messages     bodies from expect_data / expect_bdat
  srv.errors       script failures (unexpected line, EOF in the middle ...)
  srv.connections  number of connections accepted
  srv.peers        their client addresses, (host, port, ...) as accept() gives them
  srv.closed_by_client  True when the client closed first
"""
import re
import socket
import struct
import threading
import time

import pytest


class ScriptError(Exception):
    pass


class _Conn:
    def __init__(self, srv, sock):
        self.srv = srv
        self.sock = sock
        self.buf = b""

    def _recv(self, record=True):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, OSError):
            data = b""
        if data and record:
            with self.srv.lock:
                self.srv.received += data
                self.srv.chunks.append(data)
        return data

    def readline(self):
        while b"\n" not in self.buf:
            data = self._recv()
            if not data:
                raise ScriptError("client closed while the script expected a line; got %r" % self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def readexact(self, n):
        parts, have = [self.buf], len(self.buf)
        while have < n:
            data = self._recv()
            if not data:
                raise ScriptError("client closed in the middle of %d bytes" % n)
            parts.append(data)
            have += len(data)
        buf = b"".join(parts)
        out, self.buf = buf[:n], buf[n:]
        return out

    def drain(self):
        """Read (and record) until the client closes or the server stops."""
        self.sock.settimeout(0.2)
        while not self.srv.stopping.is_set():
            try:
                data = self._recv_nowait()
            except socket.timeout:
                continue
            if not data:
                with self.srv.lock:
                    self.srv.closed_by_client = True
                return

    def _recv_nowait(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise
        except OSError:
            data = b""
        if data:
            with self.srv.lock:
                self.srv.received += data
                self.srv.chunks.append(data)
        return data


class ScriptedServer:
    def __init__(self, steps, host="127.0.0.1", connections=1):
        self.steps = list(steps)
        self.lock = threading.Lock()
        self.received = bytearray()  # amortised appends: bodies may be large
        self.lines = []
        self.chunks = []
        self.messages = []
        self.raw_data = []
        self.bdat_sizes = []
        self.data_sizes = []
        self.errors = []
        self.connections = 0
        self.peers = []
        self.closed_by_client = False
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.max_connections = connections
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # -- the server thread ---------------------------------------------------------
    def _serve(self):
        try:
            while not self.stopping.is_set() and self.connections < self.max_connections:
                try:
                    sock, peer = self.lsock.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                self.connections += 1
                self.peers.append(peer)
                try:
                    self._play(_Conn(self, sock))
                finally:
                    try:
                        sock.close()
                    except OSError:
                        pass
        finally:
            self.done.set()

    def _play(self, c):
        try:
            for step in self.steps:
                if self.stopping.is_set():
                    return
                op = step[0]
                if op == "send":
                    c.sock.sendall(step[1])
                elif op == "send_slowly":
                    for b in step[1]:
                        c.sock.sendall(bytes([b]))
                        time.sleep(step[2])
                elif op == "expect":
                    line = c.readline()
                    with self.lock:
                        self.lines.append(line)
                    if not re.search(step[1], line):
                        raise ScriptError("expected %r, got %r" % (step[1], line))
                elif op == "expect_lines":
                    for _ in range(step[1]):
                        line = c.readline()
                        with self.lock:
                            self.lines.append(line)
                elif op == "expect_data":
                    raw = b""
                    while True:
                        line = c.readline()
                        if line == b".":
                            break
                        raw += line + b"\r\n"
                    body = b"".join(l[1:] + b"\r\n" if l.startswith(b".") else l + b"\r\n"
                                    for l in raw.split(b"\r\n")[:-1])
                    with self.lock:
                        self.raw_data.append(raw)
                        self.messages.append(body)
                elif op == "count_data":
                    total, tail = 0, b"\r\n"  # the DATA line ended with CRLF
                    data, c.buf = c.buf, b""
                    while True:
                        if not data:
                            data = c._recv(record=False)  # not kept: may be huge
                            if not data:
                                raise ScriptError("client closed in the middle of DATA")
                        window = tail + data
                        i = window.find(b"\r\n.\r\n")
                        if i >= 0:
                            end = i + 5 - len(tail)
                            total += end
                            c.buf = data[end:]
                            break
                        total += len(data)
                        tail = window[-4:]
                        data = b""
                    with self.lock:
                        self.data_sizes.append(total)
                elif op == "expect_bdat":
                    parts = []
                    while True:
                        line = c.readline()
                        with self.lock:
                            self.lines.append(line)
                        m = re.match(rb"^BDAT (\d+)( LAST)?$", line)
                        if not m:
                            raise ScriptError("expected BDAT, got %r" % line)
                        n = int(m.group(1))
                        parts.append(c.readexact(n))
                        with self.lock:
                            self.bdat_sizes.append(n)
                        c.sock.sendall(step[1])
                        if m.group(2):
                            break
                    with self.lock:
                        self.messages.append(b"".join(parts))
                elif op == "sleep":
                    self.stopping.wait(step[1])
                elif op == "close":
                    c.sock.shutdown(socket.SHUT_RDWR)
                    return
                elif op == "drop":
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                elif op == "hang":
                    c.drain()
                    return
                elif op == "flood":
                    try:
                        for _ in range(step[2]):
                            if self.stopping.is_set():
                                return
                            c.sock.sendall(step[1])
                    except OSError:
                        return
                else:
                    raise ScriptError("unknown step %r" % (step,))
            c.drain()
        except ScriptError as e:
            with self.lock:
                self.errors.append(str(e))
        except OSError as e:
            with self.lock:
                self.errors.append("socket error: %s" % e)

    # -- the test side -------------------------------------------------------------
    def wait(self, timeout=30):
        """Waits for the script (and the connection) to end; True if it did."""
        return self.done.wait(timeout)

    def stop(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        self.thread.join(10)


@pytest.fixture
def scripted():
    """Factory: scripted(steps, host="127.0.0.1", connections=1) -> ScriptedServer."""
    servers = []

    def start(steps, **kw):
        s = ScriptedServer(steps, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
