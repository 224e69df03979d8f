"""Real ``labelhub serve`` processes for tests where a socket, a process or a crash matters."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def labelhub_executable() -> str:
    beside = Path(sys.executable).parent / "labelhub"
    found = str(beside) if beside.exists() else shutil.which("labelhub")
    assert found, "the labelhub console script is not installed"
    return found


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
    env.update(overrides)
    return env


class Server:
    """``labelhub serve`` in a subprocess; stderr is kept in a file to read afterwards."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._err = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="labelhub-serve-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [labelhub_executable(), "serve", "--port", str(self.port), *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    @property
    def stderr(self) -> str:
        return Path(self._err.name).read_text(errors="replace")

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"labelhub exited {self.proc.returncode}: {self.stderr}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"labelhub did not come up: {self.stderr}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        return self.proc.returncode
