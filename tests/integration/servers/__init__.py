"""Test servers for smtpc's integration tests (one module per server).

Import the fixtures a test needs explicitly, e.g.
``from servers.aiosmtpd_server import aiosmtpd  # noqa: F401`` or
``from servers.scripted import scripted  # noqa: F401``.
"""
