"""A fault-injecting PIPELINING SMTP server for exactly-once tests.

Messages carry "Message-ID: <IDX.bulk@test>"; the server counts each
accepted IDX (delivered), and injects faults by message or command count::

    from servers.fault import FaultServer
    srv = FaultServer(drop_every=50, t421_every=37)
    try:
        ... send to srv.port ...
        assert set(srv.delivered.values()) == {1}
    finally:
        srv.close()
"""
import collections
import re
import socket
import threading
import time

MID = re.compile(rb"Message-ID: <(\d+)\.bulk@test>")


class FaultServer:
    """PIPELINING server. Every `drop_every`-th body: close right after the
    final dot without replying (the client must say unknown and never send
    it again); every `t421_every`-th MAIL: 421 and close; every
    `drop_data_every`-th body: close in the middle of it (after
    `drop_data_lines` lines, which must include the Message-ID); messages in
    `reject`: 554 after the dot; in `tempfail_once`: 451 after the dot the
    first time. `dot_delay`: seconds before answering a dot."""

    def __init__(self, drop_every=0, t421_every=0, drop_data_every=0, reject=(), tempfail_once=(),
                 dot_delay=0.0, rcpt_tempfail=None, drop_data_lines=3):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.delivered = collections.Counter()
        self.dropped_after_dot, self.dropped_in_data, self.refused = [], [], []
        self.connections = 0
        self.lock = threading.Lock()
        self.nmsg = self.nmail = 0
        self.drop_every, self.t421_every, self.drop_data_every = drop_every, t421_every, drop_data_every
        self.drop_data_lines = drop_data_lines
        self.reject, self.tempfail_once, self.dot_delay = set(reject), set(tempfail_once), dot_delay
        self.rcpt_tempfail = dict(rcpt_tempfail or {})  # address -> how many 451s to give first
        self.deliveries = []  # (idx, [recipients]) per accepted message
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _every(self, n, k):
        return n and k % n == 0

    def _serve(self, c):
        f = c.makefile("rb")
        rcpts = []
        try:
            c.sendall(b"220 fault\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                u = line.upper()
                if u.startswith(b"EHLO"):
                    c.sendall(b"250-fault\r\n250 PIPELINING\r\n")
                elif u.startswith(b"MAIL"):
                    with self.lock:
                        self.nmail += 1
                        k = self.nmail
                    if self._every(self.t421_every, k):
                        c.sendall(b"421 4.3.2 try again\r\n")
                        return
                    c.sendall(b"250 ok\r\n")
                elif u.startswith(b"RCPT"):
                    addr = line[line.index(b"<") + 1:line.index(b">")].decode()
                    with self.lock:
                        left = self.rcpt_tempfail.get(addr, 0)
                        if left:
                            self.rcpt_tempfail[addr] = left - 1
                    if left:
                        c.sendall(b"451 4.2.0 later\r\n")
                    else:
                        rcpts.append(addr)
                        c.sendall(b"250 ok\r\n")
                elif u.startswith(b"RSET") or u.startswith(b"NOOP"):
                    rcpts = []
                    c.sendall(b"250 ok\r\n")
                elif u.startswith(b"DATA"):
                    if not rcpts:
                        c.sendall(b"554 5.5.1 no valid recipients\r\n")
                        continue
                    c.sendall(b"354 go\r\n")
                    with self.lock:
                        self.nmsg += 1
                        k = self.nmsg
                    body = []
                    while True:
                        l2 = f.readline()
                        if not l2:
                            return
                        if l2 == b".\r\n":
                            break
                        body.append(l2)
                        if self._every(self.drop_data_every, k) and len(body) == self.drop_data_lines:
                            with self.lock:
                                self.dropped_in_data.append(int(MID.search(b"".join(body)).group(1)))
                            return
                    idx = int(MID.search(b"".join(body)).group(1))
                    got, rcpts = rcpts, []
                    if self.dot_delay:
                        time.sleep(self.dot_delay)
                    with self.lock:
                        if idx in self.reject:
                            self.refused.append(idx)
                            reply = b"554 5.7.1 rejected\r\n"
                        elif idx in self.tempfail_once:
                            self.tempfail_once.discard(idx)
                            reply = b"451 4.3.0 later\r\n"
                        else:
                            self.delivered[idx] += 1
                            self.deliveries.append((idx, got))
                            reply = b"250 queued\r\n"
                            if self._every(self.drop_every, k):
                                self.dropped_after_dot.append(idx)
                                return
                    c.sendall(reply)
                elif u.startswith(b"QUIT"):
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"500 what\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()
