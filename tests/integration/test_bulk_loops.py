"""smtpc_bulk driven by an application's own event loop, through the
header-only adapters include/smtpc/adapters/libuv.h and libevent.h."""
import os
import re
import subprocess

import pytest

from conftest import BUILD_DIR
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401


@pytest.mark.parametrize("loop", ["uv", "event"])
def test_adapter_sends_mail(aiosmtpd, loop):
    exe = BUILD_DIR / "tests" / f"drv_{loop}"
    if not exe.exists():
        pytest.skip(f"lib{loop} not installed at build time (scripts/deps/async.txt)")
    srv = aiosmtpd(pipelining=True)
    p = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "200", "4"], capture_output=True,
                       timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0, out[-1000:] + p.stderr.decode()
    assert "DONE 200 1" in out, out[-1000:]
    got = sorted(int(re.search(rb"<(\d+)\.bulk@test>", e.data).group(1)) for e in srv.envelopes)
    assert got == list(range(200))
    assert all(b"via lib" + loop.encode() in e.data for e in srv.envelopes)
