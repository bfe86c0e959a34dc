"""Starting `phasewise serve` on a free 127.0.0.1 port for the twin load tests, and waiting for it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request


def start_twin(*flags: str) -> tuple[subprocess.Popen, int]:
    """`phasewise serve --port <free port> *flags` in a subprocess, returned once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "phasewise.apps.cli", "serve", "--port", str(port), *flags],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server, port
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("phasewise serve did not answer /health within 10 s")
