"""Keep a set of `atelier` child processes running: the process tree of `atelier serve`.

Each child is an ordinary `atelier <command>` subprocess (a bot, a worker). Its output joins one log stream, each
line prefixed with the child's name. A child that exits while it should run is restarted after a backoff that
doubles from 1 s up to 30 s and starts again from 1 s once the child has run for a minute; every exit and restart
is logged. A child that exits with status 2 (Atelier's "your settings are wrong") is not restarted: the
supervisor says so and stops everything, because it would only fail again.

Stopping (Ctrl-C or SIGTERM): the front-ends get SIGTERM first, so no new request comes in; then the workers, which
finish or hand back their running jobs (arq re-queues a job its worker gives up on SIGTERM); whatever is still
running after the grace period is killed, and its jobs are retried by the next worker. A second Ctrl-C kills at
once. Children run in process groups of their own (the terminal's Ctrl-C reaches only the supervisor, which
stops them in that order) and get SIGTERM if the supervisor itself dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long starts its backoff from the beginning again
SETTINGS_ERROR = 2  # the exit status of `atelier` for bad settings or input


@dataclass
class Child:
    """One supervised process: `atelier *args`, with `env` as its whole environment."""

    name: str
    args: list[str]
    env: dict[str, str]
    front_end: bool  # stopped before the workers
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    restarts: int = 0


class Supervisor:
    def __init__(self, children: list[Child], *, grace_s: float = 30.0, out: TextIO = sys.stdout) -> None:
        self.children = children
        self.grace_s = grace_s
        self.out = out
        self._stopping = asyncio.Event()
        self._failed: str | None = None

    def log(self, name: str, line: str) -> None:
        self.out.write(f"{name:<10}| {line}\n")
        self.out.flush()

    async def run(self) -> int:
        """Run every child until a signal (or a child's settings error) stops them; 0 after a clean stop."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, self._on_signal, signum)
        keepers = [asyncio.create_task(self._keep_running(child)) for child in self.children]
        try:
            await self._stopping.wait()
            await self._stop_all()
            await asyncio.gather(*keepers)
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
        if self._failed is not None:
            self.log("serve", f"stopped: {self._failed}")
            return 1
        self.log("serve", "stopped")
        return 0

    def _on_signal(self, signum: int) -> None:
        if self._stopping.is_set():  # the second Ctrl-C: no more waiting
            self.log("serve", "killing every process now")
            for child in self.children:
                _send(child, signal.SIGKILL)
            return
        self.log("serve", f"{signal.Signals(signum).name}: stopping (Ctrl-C again to kill at once)")
        self._stopping.set()

    async def _keep_running(self, child: Child) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stopping.is_set():
            started = time.monotonic()
            child.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "atelier",
                *child.args,
                env=child.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_terminate_with_parent,
            )
            self.log(
                "serve", f"{child.name} started (pid {child.process.pid}): atelier {' '.join(child.args)}"
            )
            if self._stopping.is_set():  # the stop began while it was starting: it missed the signal
                _send(child, signal.SIGTERM)
            assert child.process.stdout is not None
            await self._relay(child.name, child.process.stdout)
            status = await child.process.wait()
            if self._stopping.is_set():
                self.log("serve", f"{child.name} stopped ({_describe(status)})")
                return
            if status == SETTINGS_ERROR:
                self._failed = f"{child.name} cannot run with these settings (see its last lines above)"
                self.log("serve", self._failed)
                self._stopping.set()
                return
            if time.monotonic() - started >= STABLE_AFTER_S:
                backoff = FIRST_BACKOFF_S
            child.restarts += 1
            self.log("serve", f"{child.name} exited ({_describe(status)}); restarting in {backoff:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _relay(self, name: str, stream: asyncio.StreamReader) -> None:
        """Copy the child's output into the shared stream, a line at a time, under its name."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: take what is there
                line = await stream.read(2**16)
            if not line:
                return
            self.log(name, line.decode(errors="replace").rstrip())

    async def _stop_all(self) -> None:
        for front_end in (True, False):
            group = [c for c in self.children if c.front_end == front_end]
            for child in group:
                _send(child, signal.SIGTERM)
            await self._wait_or_kill(group)

    async def _wait_or_kill(self, group: list[Child]) -> None:
        running = [c.process for c in group if c.process is not None and c.process.returncode is None]
        if not running:
            return
        _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running], timeout=self.grace_s)
        if late:
            for child in group:
                if child.process is not None and child.process.returncode is None:
                    self.log("serve", f"{child.name} did not stop within {self.grace_s:.0f} s: killing it")
                    _send(child, signal.SIGKILL)
            await asyncio.wait(late)


def _send(child: Child, signum: int) -> None:
    if child.process is not None and child.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signum)


def _describe(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for a SIGTERM when the supervisor dies, so no child outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
