"""Flow-run processes forked from a warm parent: the imports are paid once per worker.

A Prefect process worker starts a new Python for every flow run; `import flows.process_upload`
(Prefect, SQLAlchemy, pandas, pandera, pyarrow...) is ~3 s of CPU of each run's start. The
deployments (prefect.yaml) give the worker this module as their job's `command` instead:

- The **launcher** (`python -m pledgeflow.warm_start`, the process the worker starts, watches and
  signals) hands its standard streams, working directory and environment over a private Unix
  socket to the worker's **warm parent**, which forks a child that runs `python -m
  prefect.engine`'s code in them. The launcher forwards the signals it receives (SIGTERM of a
  cancellation) to that child and exits with the child's exit code, or dies of the same signal,
  so the worker sees what it would see of `python -m prefect.engine`: output, crash, exit code.
- The **warm parent** is started by the first launcher of a worker (one per worker process,
  environment and version of the project's sources), imports the flows' modules once, and forks
  one child per run. It kills a child whose launcher is gone (the worker SIGKILLed it), and
  exits once its worker has exited, or a file of the project's packages has changed (the next
  run then starts a new parent with the new code), and its last child has ended. Upgraded
  dependencies (pip) are seen after the worker's restart.
- If the warm parent cannot be reached or started, the launcher runs the engine itself
  (`os.execv` of `python -m prefect.engine`): a slower start, never a lost run.

The environment a run gets is the worker's, exactly as with Prefect's own command: the warm
parent is keyed by the launcher's environment without Prefect's per-run `PREFECT__*` variables
(run id, control channel, names; Prefect reads those when the run starts, never at import), so
the settings Prefect reads at import are the run's own.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import hashlib
import importlib
import importlib.util
import json
import os
import random
import runpy
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ENGINE = "prefect.engine"  # what a launcher runs unless given another module (the tests do)
# What a flow run imports before its first task: the engine and the deployments' flows.
# (`prefect.engine` itself is run as `__main__` in the child, so it is not imported here.)
PRELOAD = (
    "prefect.flow_engine",
    "prefect._internal.metrics",
    "flows.import_file",
    "flows.process_upload",
    "flows.retry_upload",
    "flows.sweep_stuck_chunks",
)
# Prefect's per-run variables (flow run id, control channel port and token, worker, flow and
# deployment names and ids): they differ between runs of one worker, and are read at run time.
PER_RUN_PREFIX = "PREFECT__"
START_TIMEOUT = 120.0  # seconds for a new warm parent to import and listen, on a loaded machine
POLL_SECONDS = 1.0  # how often the warm parent checks that its worker is still alive
STALE_CHECK_SECONDS = 30.0  # how often an idle warm parent checks the sources it imported
# The project's own packages: a warm parent serves only the code it imported, so a change to
# one of their files makes the next run start a new parent, and the old one leave when idle.
SOURCES = ("pledgeflow", "flows", "tasks", "schemas")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Job:
    """What a forked child needs to become the run's engine process."""

    module: str
    env: dict[str, str]
    cwd: str
    fds: list[int]


def engine_command() -> dict[str, str]:
    """A prefect.yaml build step: the job `command` that starts flow runs through this module.

    `prefect deploy` runs in the project's virtualenv, so its interpreter is the one the
    worker's flow runs need (the command is run as is, not through a shell or PATH lookup).
    """
    return {"command": shlex.join([sys.executable, "-m", "pledgeflow.warm_start"])}


def _code_stamp() -> str:
    """A digest of the project's source files (path, size, modification time)."""
    files = []
    for name in SOURCES:
        spec = importlib.util.find_spec(name)  # finds the package without importing it
        for location in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(location).rglob("*.py")):
                info = path.stat()
                files.append((str(path), info.st_size, info.st_mtime_ns))
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def _runtime_dir() -> Path:
    """A directory only this user can enter, for the sockets, locks and warm parents' logs."""
    path = Path(tempfile.gettempdir()) / f"pledgeflow-warm-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{path} is not private to this user")
    return path


def _send_line(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _read_line(conn: socket.socket, buffer: bytearray) -> dict[str, Any] | None:
    """The next newline-terminated JSON message, or None at the end of the stream."""
    while b"\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    message: dict[str, Any] = json.loads(line)
    return message


# ----------------------------------------------------------------------------- launcher


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    return conn


def _connect_or_start(base_env: dict[str, str], worker: int) -> socket.socket:
    """A connection to this worker's warm parent, started first if there is none."""
    stamp = _code_stamp()
    key = hashlib.sha256(
        json.dumps([sys.executable, worker, stamp, sorted(base_env.items())]).encode()
    ).hexdigest()[:20]
    rundir = _runtime_dir()
    path = rundir / f"{key}.sock"
    conn = _connect(path)
    if conn is not None:
        return conn
    # One launcher starts the parent; the others of a burst wait on the lock, then connect.
    with open(rundir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = _connect(path)
        if conn is not None:
            return conn
        path.unlink(missing_ok=True)  # a parent that died left its socket behind
        with open(rundir / f"{key}.log", "ab") as log:
            parent = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "pledgeflow.warm_start",
                    "--serve",
                    str(path),
                    stamp,
                    str(worker),
                ],
                env=base_env,
                cwd=rundir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # the worker's signals to a run never reach it
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            conn = _connect(path)
            if conn is not None:
                return conn
            if parent.poll() is not None:
                raise OSError(f"the warm parent exited with {parent.returncode}")
            if time.monotonic() > deadline:
                parent.kill()
                raise OSError(f"the warm parent did not listen within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)


def _launch(module: str) -> int:
    """Run `module` (the engine) as `__main__` in a child of the warm parent; return (or die
    of) the child's end."""
    env = dict(os.environ)
    base_env = {k: v for k, v in env.items() if not k.startswith(PER_RUN_PREFIX)}
    child: list[int] = []
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child[0], signum)
        else:
            pending.append(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    try:
        conn = _connect_or_start(base_env, os.getppid())
        request = json.dumps({"module": module, "env": env, "cwd": os.getcwd()}).encode() + b"\n"
        socket.send_fds(conn, [request], [0, 1, 2])
        buffer = bytearray()
        started = _read_line(conn, buffer)
        if started is None:
            raise OSError("the warm parent closed the connection before forking")
    except OSError as exc:
        print(
            f"pledgeflow.warm_start: no warm parent ({exc}); running the engine directly",
            file=sys.stderr,
            flush=True,
        )
        for forwarded in FORWARDED_SIGNALS:
            signal.signal(forwarded, signal.SIG_DFL)
        if pending:  # a signal came before any child: end as the engine would have
            signal.raise_signal(pending[0])
        os.execv(sys.executable, [sys.executable, "-m", module])  # noqa: S606
    child.append(int(started["pid"]))
    for early in pending:
        forward(early, None)
    ended = _read_line(conn, buffer)
    if ended is None:
        # The warm parent died: nothing would report or reap the run, so end it.
        _kill_run(child[0])
        print("pledgeflow.warm_start: the warm parent exited during the run", file=sys.stderr)
        return 1
    code = int(ended["exit"])
    if code < 0:  # killed by a signal: die of it too, as `python -m prefect.engine` would
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


# ----------------------------------------------------------------------------- warm parent


def _kill_run(pid: int) -> None:
    """SIGKILL a forked run and its process group (it may not have made its group yet)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _receive(conn: socket.socket) -> Job:
    conn.settimeout(30)
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    buffer = bytearray(data)
    while b"\n" not in buffer:
        more = conn.recv(1 << 20)
        if not more:
            break
        buffer += more
    conn.settimeout(None)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise OSError(f"expected 3 descriptors, got {len(fds)}")
    request = json.loads(bytes(buffer).partition(b"\n")[0])
    return Job(
        module=str(request["module"]),
        env=dict(request["env"]),
        cwd=str(request["cwd"]),
        fds=list(fds),
    )


def _open_sockets() -> list[str]:
    """The sockets this process holds (Linux: /proc/self/fd; elsewhere none are seen)."""
    found = []
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir() if fds.is_dir() else []:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:"):
                found.append(target)
    return found


def _serve(path: Path, stamp: str, worker: int) -> Job | None:
    """Import the flows, then fork a child per request; return the Job in a child only.

    Ends once its worker has exited, or its sources changed (`stamp`, the digest its launcher
    saw, is no longer theirs), when no run of it is left."""
    checked = time.monotonic()
    stale = _code_stamp() != stamp
    for module in PRELOAD:
        importlib.import_module(module)
    if threading.active_count() > 1:
        # Forking a process with running threads can leave locks held in the child.
        raise SystemExit(f"threads started while importing {PRELOAD}: not forking")
    if _open_sockets():
        # Every forked run would share the connection (a database's, Redis's) with the others.
        raise SystemExit(f"sockets opened while importing {PRELOAD}: not forking")
    me = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    # A run's end wakes the loop at once (SIGCHLD, through the wakeup fd), not at its next poll.
    wake, woken = socket.socketpair()
    wake.setblocking(False)
    woken.setblocking(False)
    signal.set_wakeup_fd(woken.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    print(f"warm parent {me} for worker {worker} listening on {path.name}", flush=True)
    try:
        while children or (_alive(worker) and not stale):
            for key, _events in selector.select(timeout=POLL_SECONDS):
                if key.fileobj is wake:
                    with contextlib.suppress(BlockingIOError):
                        wake.recv(4096)
                elif key.fileobj is listener:
                    conn, _ = listener.accept()
                    try:
                        job = _receive(conn)
                    except (OSError, ValueError) as exc:
                        print(f"bad request: {exc}", flush=True)
                        conn.close()
                        continue
                    sys.stdout.flush()
                    sys.stderr.flush()
                    # The imported objects go to the collector's permanent generation: a
                    # child's collections then neither scan them nor copy their pages.
                    gc.freeze()
                    pid = os.fork()
                    if pid == 0:
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        selector.close()
                        for own in (listener, wake, woken, conn):
                            own.close()
                        for other in children.values():
                            other.close()
                        return job
                    for fd in job.fds:
                        os.close(fd)
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
                    with contextlib.suppress(OSError):  # a launcher gone: its EOF ends the child
                        _send_line(conn, {"pid": pid})
                else:
                    # A launcher never writes after its request: readable means it is gone
                    # (the worker killed it), so its run must not go on unwatched.
                    selector.unregister(key.fileobj)
                    _kill_run(int(key.data))
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                ended = children.pop(pid, None)
                if ended is None:
                    continue
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(ended)
                with contextlib.suppress(OSError):
                    _send_line(ended, {"exit": os.waitstatus_to_exitcode(status)})
                ended.close()
            if not children and time.monotonic() - checked > STALE_CHECK_SECONDS:
                checked = time.monotonic()
                stale = _code_stamp() != stamp
    finally:
        if os.getpid() == me:
            path.unlink(missing_ok=True)
    # Nothing asks for this key again (it names the worker and the sources): a clean end
    # leaves no files behind (a parent that failed leaves its log).
    for leftover in (path.with_suffix(".lock"), path.with_suffix(".log")):
        leftover.unlink(missing_ok=True)
    return None


def _become_engine(job: Job) -> None:
    """In the forked child: take the launcher's streams, directory and environment, then run
    the engine."""
    os.setsid()  # its own group: the warm parent can end it with everything it started
    for target, fd in enumerate(job.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(job.cwd)
    os.environ.clear()
    os.environ.update(job.env)
    random.seed()  # not the parent's sequence
    sys.argv = [sys.argv[0]]
    # Run as `python -m` would, as a fresh module (a preloaded flow may have imported it).
    sys.modules.pop(job.module, None)
    # The interpreter's own exit runs (threads joined, Prefect's atexit flushes of logs and
    # events, the exit code of SystemExit), but not the teardown of the ~2,200 modules the parent
    # imported, which would copy their pages to drop them: this handler, registered first, runs
    # last and ends the process.
    code: list[int | None] = [None]
    atexit.register(_end_now, code)
    try:
        runpy.run_module(job.module, run_name="__main__", alter_sys=True)
        code[0] = 0
    except SystemExit as exc:
        code[0] = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        raise
    except KeyboardInterrupt:
        raise  # the interpreter's full exit: it then dies of SIGINT, as `python -m` does
    except BaseException:
        code[0] = 1  # the traceback is printed first, as by `python -m`
        raise


def _end_now(code: list[int | None]) -> None:
    if code[0] is not None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code[0])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--serve"]:
        job = _serve(Path(args[1]), args[2], int(args[3]))
        if job is None:
            return 0
        _become_engine(job)  # exits through SystemExit, as `python -m prefect.engine` does
        return 0
    return _launch(args[0] if args else ENGINE)


if __name__ == "__main__":
    raise SystemExit(main())
