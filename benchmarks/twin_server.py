"""Starting `phasewise serve` on a free 127.0.0.1 port for the twin load tests, and waiting for it."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HEALTH_WAIT_S = 10.0


def _said(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace").strip()


def start_twin(*flags: str) -> tuple[subprocess.Popen, int]:
    """`phasewise serve --port <free port> *flags` in a subprocess, returned once /health answers. If serve stops
    first (a flag it refuses: an unknown model, a TP the model does not divide), this run ends at once with serve's
    own message and exit status, not a wait for the health check. Serve's stderr goes to a temporary file (read
    only then), not a pipe nobody reads, which a long run's warnings could fill and stall the server on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([sys.executable, "-m", "phasewise.apps.cli", "serve", "--port", str(port), *flags],
                                  stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + HEALTH_WAIT_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                print(_said(log) or f"phasewise serve exited with status {server.returncode} before answering "
                      "/health", file=sys.stderr)
                raise SystemExit(server.returncode or 1)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                return server, port  # serve keeps writing to the (unlinked) file; this process no longer reads it
            except OSError:
                time.sleep(0.1)
        server.terminate()
        server.wait(timeout=10)
        said = _said(log)
    raise SystemExit(f"phasewise serve did not answer /health within {HEALTH_WAIT_S:g} s"
                     + (f"; it said: {said.splitlines()[-1]}" if said else ""))
