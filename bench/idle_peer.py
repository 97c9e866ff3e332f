#!/usr/bin/python3
"""A minimal asyncio SMTP peer for the idle-connection memory benchmark
(smtp-sink stops greeting past 256 concurrent sessions here). Greets, answers
EHLO with PIPELINING, QUIT with 221, anything else 250.
  idle_peer.py PORT"""
import asyncio
import resource
import sys


async def handle(r, w):
    w.write(b"220 idle-peer ESMTP\r\n")
    try:
        while True:
            line = await r.readline()
            if not line:
                break
            u = line[:4].upper()
            if u == b"EHLO":
                w.write(b"250-idle-peer\r\n250 PIPELINING\r\n")
            elif u == b"QUIT":
                w.write(b"221 bye\r\n")
                await w.drain()
                break
            else:
                w.write(b"250 ok\r\n")
    except (ConnectionError, OSError):
        pass
    w.close()


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
