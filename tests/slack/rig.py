"""The Slack end-to-end rig: one emulator, one real `atelier worker` and the real `atelier slack` processes
(HTTP mode and Socket Mode), on the run's Redis (DB 6), PostgreSQL (atelier_test_slack plus the run's suffix), local blobs and tiny models.

Everything is session-scoped and started on first use: processes cost seconds on two cores, so tests share
them and keep apart by using their own channel ids. The top-level conftest registers this module as a plugin, so
every area that drives the Slack bot (tests/slack, tests/security) shares the one rig in a run; nothing here runs
until a test asks for a fixture (the run's Redis included).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import redis

from tests.slack.emulator import SlackEmulator
from tests.support import atelier_env, free_port, redis_url

REDIS_DB = 6  # the rig's database on the run's Redis (`redis_url(REDIS_DB)`)
DATABASE = "atelier_test_slack"
SIGNING_SECRET = "emulated-signing-secret"
BOT_TOKEN = "xoxb-emulated-bot-token"
APP_TOKEN = "xapp-emulated-app-token"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    """A real `atelier` subprocess whose output goes to a log file that failing assertions can show."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self, tail: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} log (last {tail} lines) ---\n" + "\n".join(lines[-tail:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s. Waits without blocking the loop: the emulator runs on it and the
        process may still be talking to it (closing its WebSocket) while it shuts down."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, 15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                await asyncio.to_thread(self.popen.wait, 5)


STARTED: list[Process] = []  # every process of the rig, so a failing test can show what they logged


def rig_process(name: str) -> Process:
    """The rig's process started as `name` ("worker", "slack-http", "slack-socket")."""
    return next(process for process in reversed(STARTED) if process.name == name)


async def logged(process: Process, text: str, *, times: int = 1, within: float = 10) -> None:
    """Until `text` is in the process's log `times` times: what a test waits on instead of sleeping to see that
    nothing more happens, where the process says what it did (a redelivered event dropped)."""
    deadline = time.monotonic() + within
    while process.log_path.read_text(errors="replace").count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not logged {times} times\n" + process.log()
        await asyncio.sleep(0.1)


def start(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as out:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            [sys.executable, "-m", "atelier", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    STARTED.append(Process(name, popen, log_path))
    return STARTED[-1]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the rig's process logs to a failing test's report."""
    report = yield
    if report.failed:
        for process in STARTED:
            if process.log_path.exists():
                report.sections.append((f"atelier {process.name} log", process.log(tail=80)))
    return report


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def slack_emulator() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator(admins={"UADMIN"}, bot_token=BOT_TOKEN)
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def slack_database(postgres_databases) -> str:
    return await postgres_databases(DATABASE)


@pytest.fixture(scope="session")
def slack_env(
    slack_database: str,
    slack_emulator: SlackEmulator,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The environment every process of the rig runs with (no ATELIER_* or SLACK_* from the outside leaks in)."""
    redis.Redis.from_url(redis_url(REDIS_DB)).flushdb()
    data = tmp_path_factory.mktemp("slack-data")
    base = {k: v for k, v in atelier_env().items() if not k.startswith("SLACK_")}
    return {
        **base,
        "ATELIER_DATA_DIR": str(data),
        "ATELIER_REDIS_URL": redis_url(REDIS_DB),
        "ATELIER_DATABASE_URL": slack_database,
        "ATELIER_BLOB_URL": str(data / "blobs"),
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        "ATELIER_SLACK_BOT_TOKEN": BOT_TOKEN,
        "ATELIER_SLACK_API_BASE": slack_emulator.api_base,
        "ATELIER_SLACK_ADMINS": "UCONFIGADMIN",
        "ATELIER_SLACK_OPERATORS": "UOPERATOR",  # runs Atelier: above the operator's ceilings (quotas.ceilings)
        "ATELIER_LOG_LEVEL": "INFO",
        # One job at a time (no batching): a second job really waits in the queue, as the cancel test needs.
        "ATELIER_MAX_BATCH": "1",
    }


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slack-logs")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def slack_worker(slack_env: dict[str, str], log_dir: Path) -> AsyncIterator[Process]:
    """A real worker with the Slack replier (it is injected because the bot token is set), serving the image
    queue and the LoRA training queue."""
    process = start("worker", ["worker", "--queues", "images,train"], slack_env, log_dir)
    client = redis.asyncio.Redis.from_url(redis_url(REDIS_DB))
    try:
        deadline = time.monotonic() + 120
        while not [k async for k in client.scan_iter(match="atelier:worker:*")]:
            assert process.alive(), process.log()
            assert time.monotonic() < deadline, "the worker did not start\n" + process.log()
            await asyncio.sleep(0.2)
        yield process
    finally:
        await client.aclose()
        await process.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http_bot(slack_env: dict[str, str], log_dir: Path, slack_worker: Process) -> AsyncIterator[str]:
    """`atelier slack` in HTTP mode; yields the URL of its events endpoint."""
    port = free_port()
    env = {
        **slack_env,
        "ATELIER_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "ATELIER_SLACK_HOST": "127.0.0.1",
        "ATELIER_SLACK_PORT": str(port),
    }
    process = start("slack-http", ["slack"], env, log_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                assert process.alive(), process.log()
                assert time.monotonic() < deadline, "the HTTP app did not start\n" + process.log()
                try:
                    async with session.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.2)
        yield f"{base}/slack/events"
    finally:
        await process.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def socket_bot(
    slack_env: dict[str, str], log_dir: Path, slack_emulator: SlackEmulator, slack_worker: Process
) -> AsyncIterator[Process]:
    """`atelier slack` in Socket Mode, connected to the emulator's WebSocket."""
    env = {**slack_env, "ATELIER_SLACK_APP_TOKEN": APP_TOKEN}
    process = start("slack-socket", ["slack"], env, log_dir)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.alive(), process.log()
            assert time.monotonic() < deadline, "the Socket Mode app did not connect\n" + process.log()
            try:
                await slack_emulator.wait_socket_connected(within_s=0.5)
                break
            except TimeoutError:
                pass
        yield process
    finally:
        await process.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db(slack_database: str, slack_worker: Process) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the rig's database (its schema is the one the processes migrated to)."""
    connection = await asyncpg.connect(slack_database)
    yield connection
    await connection.close()
