"""A fault-injecting PIPELINING SMTP server for exactly-once tests.

Messages carry "Message-ID: <IDX.bulk@test>"; the server counts each
accepted IDX (delivered), and injects faults by message or command count,
or at random (a seeded RNG, one probability per kind of fault)::

    from servers.fault import FaultServer
    srv = FaultServer(drop_every=50, t421_every=37)
    srv = FaultServer(seed=1, p={"drop_dot": 0.01, "reset": 0.005})
    try:
        ... send to srv.port ...
        assert set(srv.delivered.values()) == {1}
    finally:
        srv.close()

The random faults end a connection so that the server knows exactly what
the client wrote: a drop half-closes (the client reads end of file) and
reads on until the client closes, a stall stops answering and reads on
until the client gives up; neither answers anything more. `record` holds
one entry per body the server saw begin: (idx, dot_seen, reply) where
reply is the code sent after the dot, or None when none was sent.
"""
import collections
import fcntl
import random
import re
import socket
import struct
import termios
import threading
import time

MID = re.compile(rb"Message-ID: <(\d+)\.bulk@test>")

# The random faults and where they strike.
KINDS = ("drop_dot", "drop_data", "t421", "rcpt451", "stall", "reset")


class FaultServer:
    """PIPELINING server. Every `drop_every`-th body: close right after the
    final dot without replying (the client must say unknown and never send
    it again); every `t421_every`-th MAIL: 421 and close; every
    `drop_data_every`-th body: close in the middle of it (after
    `drop_data_lines` lines, which must include the Message-ID); messages in
    `reject`: 554 after the dot; in `tempfail_once`: 451 after the dot the
    first time. `dot_delay`: seconds before answering a dot.

    Random faults (`seed`, `p`: kind -> probability at each point it may
    strike): "drop_dot" accepts the message and drops the connection
    instead of replying; "drop_data" drops it after `drop_data_lines` lines
    of a body (not delivered; then `cut_pause` seconds without reading,
    so that a large body is cut before its dot); "t421" answers 421 to a MAIL and closes;
    "rcpt451" answers 451 to a RCPT; "stall" stops answering (at a MAIL, or
    after a dot: the message is accepted) until the client closes; "reset"
    closes with a TCP reset (SO_LINGER 0) at a MAIL or instead of the reply
    to a dot (not delivered); "drop_data_big", for a message with an
    "X-Big:" header (the client's body must be larger than its socket
    buffers, over 4 MiB on Linux): stops reading at the end of the header
    for `cut_pause` seconds, then resets, before the client could write its
    dot. Each kind with a probability strikes at least once, at the latest
    at its chance number `at_least_after` + 1. `injected` counts them by kind. `stop_once` (idx -> octets): the
    first body of message idx is read up to that many octets, then the
    server stops reading and resets as for "drop_data_big"."""

    def __init__(self, drop_every=0, t421_every=0, drop_data_every=0, reject=(), tempfail_once=(),
                 dot_delay=0.0, rcpt_tempfail=None, drop_data_lines=3, seed=None, p=None, cut_pause=0.2,
                 rcvbuf=0, stop_once=None, at_least_after=25):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # inherited by the connections: a small window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
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
        self.rng = random.Random(seed)
        self.p = dict(p or {})
        self.cut_pause = cut_pause
        self.stop_once = dict(stop_once or {})  # idx -> body octets read before a reset, once
        assert set(self.p) <= set(KINDS) | {"drop_data_big"}, self.p
        self.injected = collections.Counter()
        self.chances = collections.Counter()  # per kind, while it has not struck
        self.at_least_after = at_least_after
        self.record = []  # (idx, dot_seen, reply code or None) per body begun
        self.stop = False
        self.active = 0  # connections being served
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.active += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _every(self, n, k):
        return n and k % n == 0

    def _pick(self, *kinds):
        """One of kinds at random (their probabilities), or None. A kind with
        a probability that has not struck in its first `at_least_after`
        chances strikes at the next: the connections' threads draw from one
        RNG in an order the scheduler decides, so the seed alone does not
        promise that every kind happens in a short run."""
        if not self.p:
            return None
        with self.lock:
            for k in kinds:
                if self.p.get(k, 0.0) > 0 and not self.injected[k]:
                    self.chances[k] += 1
                    if self.chances[k] > self.at_least_after:
                        self.injected[k] += 1
                        return k
            r = self.rng.random()
            for k in kinds:
                r -= self.p.get(k, 0.0)
                if r < 0:
                    self.injected[k] += 1
                    return k
        return None

    @staticmethod
    def _reset(c):
        """A TCP reset, once what was sent has reached the client (a reset
        throws away what the kernel still holds)."""
        end = time.monotonic() + 2
        while time.monotonic() < end:
            if struct.unpack("i", fcntl.ioctl(c.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0] == 0:
                break
            time.sleep(0.001)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = c.makefile("rb")
        rcpts = []
        mute = False  # after a drop or a stall: read on, answer nothing

        def say(b):
            if not mute:
                c.sendall(b)

        def drop():
            nonlocal mute
            mute = True
            c.shutdown(socket.SHUT_WR)

        try:
            say(b"220 fault\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                u = line.upper()
                if u.startswith(b"EHLO"):
                    say(b"250-fault\r\n250 PIPELINING\r\n")
                elif u.startswith(b"MAIL"):
                    if mute:
                        continue
                    with self.lock:
                        self.nmail += 1
                        k = self.nmail
                    if self._every(self.t421_every, k):
                        say(b"421 4.3.2 try again\r\n")
                        return
                    fault = self._pick("t421", "stall", "reset")
                    if fault == "t421":
                        say(b"421 4.3.2 try again\r\n")
                        drop()
                    elif fault == "stall":
                        mute = True
                    elif fault == "reset":
                        self._reset(c)
                        return
                    else:
                        say(b"250 ok\r\n")
                elif u.startswith(b"RCPT"):
                    if mute:
                        continue
                    addr = line[line.index(b"<") + 1:line.index(b">")].decode()
                    with self.lock:
                        left = self.rcpt_tempfail.get(addr, 0)
                        if left:
                            self.rcpt_tempfail[addr] = left - 1
                    if left or self._pick("rcpt451"):
                        say(b"451 4.2.0 later\r\n")
                    else:
                        rcpts.append(addr)
                        say(b"250 ok\r\n")
                elif u.startswith(b"RSET") or u.startswith(b"NOOP"):
                    rcpts = []
                    say(b"250 ok\r\n")
                elif u.startswith(b"DATA"):
                    if mute:
                        continue  # no 354: no body comes
                    if not rcpts:
                        say(b"554 5.5.1 no valid recipients\r\n")
                        continue
                    say(b"354 go\r\n")
                    with self.lock:
                        self.nmsg += 1
                        k = self.nmsg
                    cut = self._pick("drop_data")
                    body, in_header, nread = [], True, 0
                    while True:
                        l2 = f.readline()
                        if in_header and l2 == b"\r\n" and not mute:
                            in_header = False
                            m = MID.search(b"".join(body))
                            hidx = int(m.group(1)) if m else None
                            if any(h.startswith(b"X-Big:") for h in body) and self._pick("drop_data_big"):
                                # a body larger than the socket buffers: stop
                                # reading until the client is stuck in it,
                                # then reset; its dot cannot have been written
                                time.sleep(self.cut_pause)
                                with self.lock:
                                    idx = int(MID.search(b"".join(body)).group(1))
                                    self.dropped_in_data.append(idx)
                                    self.record.append((idx, False, None))
                                self._reset(c)
                                return
                        if not l2:
                            m = MID.search(b"".join(body))
                            if m:  # the client went away in the body
                                with self.lock:
                                    self.record.append((int(m.group(1)), False, None))
                            return
                        if l2 == b".\r\n":
                            break
                        body.append(l2)
                        nread += len(l2)
                        if not in_header and self.stop_once and not mute:
                            with self.lock:
                                at = self.stop_once.get(hidx)
                            if at is not None and nread >= at:
                                with self.lock:
                                    del self.stop_once[hidx]
                                    self.dropped_in_data.append(hidx)
                                    self.record.append((hidx, False, None))
                                time.sleep(self.cut_pause)  # the client's buffers fill up
                                self._reset(c)
                                return
                        if len(body) == self.drop_data_lines and not mute:
                            if self._every(self.drop_data_every, k):
                                with self.lock:
                                    self.dropped_in_data.append(int(MID.search(b"".join(body)).group(1)))
                                return
                            if cut:
                                with self.lock:
                                    self.dropped_in_data.append(int(MID.search(b"".join(body)).group(1)))
                                drop()
                                # not reading for a while: a client with more
                                # body than the socket buffers hold stops and
                                # sees the end of the connection before its dot
                                time.sleep(self.cut_pause)
                    idx = int(MID.search(b"".join(body)).group(1))
                    got, rcpts = rcpts, []
                    if mute:  # the body ended after a drop: seen, not answered, not taken
                        with self.lock:
                            self.record.append((idx, True, None))
                        continue
                    if self.dot_delay:
                        time.sleep(self.dot_delay)
                    special = idx in self.reject or idx in self.tempfail_once
                    fault = None if special else self._pick("drop_dot", "stall", "reset")
                    with self.lock:
                        if idx in self.reject:
                            self.refused.append(idx)
                            reply = b"554 5.7.1 rejected\r\n"
                        elif idx in self.tempfail_once:
                            self.tempfail_once.discard(idx)
                            reply = b"451 4.3.0 later\r\n"
                        elif fault == "reset":
                            self.record.append((idx, True, None))
                            reply = None
                        else:
                            self.delivered[idx] += 1
                            self.deliveries.append((idx, got))
                            reply = b"250 queued\r\n"
                            if self._every(self.drop_every, k):
                                self.dropped_after_dot.append(idx)
                                self.record.append((idx, True, None))
                                return
                            if fault:
                                self.dropped_after_dot.append(idx)
                                self.record.append((idx, True, None))
                                reply = None
                        if reply:
                            self.record.append((idx, True, int(reply[:3])))
                    if fault == "reset":
                        self._reset(c)
                        return
                    if fault == "drop_dot":
                        drop()
                    elif fault == "stall":
                        mute = True
                    if reply:
                        say(reply)
                elif u.startswith(b"QUIT"):
                    say(b"221 bye\r\n")
                    return
                elif not mute:
                    say(b"500 what\r\n")
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.active -= 1

    def close(self, wait=30):
        """Stops accepting; waits (up to `wait` seconds) for the connections
        still being served, so that the record is complete."""
        self.stop = True
        self.sock.close()
        end = time.monotonic() + wait
        while self.active and time.monotonic() < end:
            time.sleep(0.01)
