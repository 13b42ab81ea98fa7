"""Real processes for end-to-end tests: a Prefect server, a worker and the webhook."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _ephemeral_ports() -> range:
    """The ports the kernel hands to client sockets (connections to PostgreSQL, Redis, …)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_port() -> int:
    """A TCP port nothing listens on right now, chosen below the ephemeral range: a server may
    bind it minutes later (a Prefect server starting on a busy machine), and in the meantime a
    client socket could be given a port from that range, but never this one."""
    top = min(_ephemeral_ports().start, 32768)
    for _ in range(200):
        port = random.randrange(max(10_000, top - 12_000), top)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.5,
    log: Path | None = None,
) -> None:
    """Poll `check` until it holds; fail with `what` (and the process log) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(interval)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


@contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a long-lived process with its output in `log`; stop it and its children after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def run(
    args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail with its output if it fails."""
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _pg_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl) from the newest installed version."""
    found = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    assert found, f"PostgreSQL's {name} is required (apt-get install postgresql) and was not found"
    return str(found[-1])


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and the server refuse to run as root; CI and these machines run tests as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class OwnPostgres:
    """A PostgreSQL cluster of a test's own (initdb + pg_ctl on a free port), so that the test
    can restart and stop it; removed with its data when stopped for good."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        # Server settings for every start, e.g. {"max_connections": "40"}.
        self.settings = settings or {}
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pledgeflow-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        done = subprocess.run(
            _as_postgres(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"initdb failed:\n{done.stdout}\n{done.stderr}"
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of one database of this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster (start, stop, restart …) and wait for it to finish."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        options += "".join(f" -c {k}={v}" for k, v in self.settings.items())
        command = [_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options]
        done = subprocess.run(
            _as_postgres([*command, "-w", *args]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"pg_ctl {' '.join(args)} failed:\n{done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.pg_ctl("start")

    def destroy(self) -> None:
        """Stop the server at once and delete its files."""
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    """A redis-server of a test's own on a free port, without persistence, that it may kill."""

    def __init__(self, port: int | None = None) -> None:
        # A `port` given starts it again where a killed one listened.
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, 20, f"redis-server on port {self.port}", interval=0.1)

    def answers(self) -> bool:
        """Whether the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server (SIGKILL) and wait until it is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
