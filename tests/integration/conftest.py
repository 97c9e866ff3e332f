"""Shared pytest fixtures for smtpc's integration tests.

Paths come from the environment set by ctest (tests/CMakeLists.txt):
SMTPC_BUILD_DIR (binaries) and SMTPC_SOURCE_DIR.
"""
import os
import pathlib
import re
import shlex

import pytest

BUILD_DIR = pathlib.Path(os.environ.get("SMTPC_BUILD_DIR", pathlib.Path(__file__).resolve().parents[2] / "build"))
SOURCE_DIR = pathlib.Path(os.environ.get("SMTPC_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))


@pytest.fixture
def smtpc_bin(tmp_path_factory):
    p = BUILD_DIR / "smtpc"
    assert p.exists(), f"smtpc binary not built at {p}"
    # SMTPC_TEST_WRAPPER: a command prefix for every smtpc the tests run
    # (make check-valgrind: valgrind ...), through a script named smtpc.
    wrap = os.environ.get("SMTPC_TEST_WRAPPER")
    if not wrap:
        return str(p)
    d = tmp_path_factory.mktemp("wrapper")
    w = d / "smtpc"
    # the binary under its caller's name (a "sendmail" link runs as sendmail)
    w.write_text(f'#!/bin/sh\nn="{d}/argv0/$(basename "$0")"\nmkdir -p "{d}/argv0"\n'
                 f'[ -e "$n" ] || ln -sf {shlex.quote(str(p))} "$n"\nexec {wrap} "$n" "$@"\n')
    w.chmod(0o755)
    return str(w)


def driver(name):
    """Path of a C test driver (tests/integration/drv_<name>.c)."""
    p = BUILD_DIR / "tests" / f"drv_{name}"
    assert p.exists(), f"driver not built: {p}"
    return str(p)


def sanitized():
    """The build tree was configured with SMTPC_SANITIZE (make check-asan):
    absolute memory figures mean little there."""
    cache = BUILD_DIR / "CMakeCache.txt"
    return cache.exists() and re.search(r"^SMTPC_SANITIZE:BOOL=(ON|1|TRUE)$", cache.read_text(),
                                        flags=re.M | re.I) is not None
