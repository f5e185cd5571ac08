"""The embedded Redis of a data folder, used by several real processes: whoever started it may go first, or be
killed, and the others keep the queue; the last one to leave stops it and leaves no socket folder behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import redis

from atelier.embedded_redis import EmbeddedRedis, socket_path_for

# A process that joins the folder's Redis, pushes its name onto a list, says so, and leaves on a line on stdin.
USER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import redis
    from atelier.embedded_redis import EmbeddedRedis
    embedded = EmbeddedRedis(Path(sys.argv[1]))
    embedded.start()
    redis.Redis(unix_socket_path=embedded.socket_path).rpush("users", sys.argv[2])
    print("joined", flush=True)
    sys.stdin.readline()
    embedded.stop()
    """
)


def join(data: Path, name: str) -> subprocess.Popen[str]:
    user = subprocess.Popen(
        [sys.executable, "-c", USER, str(data), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert user.stdout is not None and user.stdout.readline() == "joined\n"
    return user


def leave(user: subprocess.Popen[str]) -> None:
    assert user.stdin is not None
    user.stdin.write("\n")
    user.stdin.flush()
    assert user.wait(timeout=60) == 0


def test_the_starter_leaves_first_and_the_others_keep_the_queue(tmp_path: Path) -> None:
    # A folder deep enough that the socket cannot live in it (unix socket paths are short).
    data = tmp_path / ("deep-" * 20) / "data"
    socket = socket_path_for((data / "redis").resolve())
    assert not socket.is_relative_to(tmp_path)
    starter, other = join(data, "starter"), join(data, "other")
    client = redis.Redis(unix_socket_path=str(socket))
    leave(starter)
    assert client.lrange("users", 0, -1) == [b"starter", b"other"]  # the same server, still running

    # A user killed outright leaves no lock behind and takes nothing down.
    killed = join(data, "killed")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert client.rpush("users", "after-kill") == 4

    leave(other)  # the last one: it stops the server, which saves the queue first
    client.close()
    assert not EmbeddedRedis(data).running()
    assert not socket.parent.exists()  # no empty socket folder left in the temporary directory
    assert (data / "redis" / "dump.rdb").exists()

    again = join(data, "again")  # the next process starts it anew, from the saved queue
    client = redis.Redis(unix_socket_path=str(socket))
    assert client.lrange("users", 0, -1) == [b"starter", b"other", b"killed", b"after-kill", b"again"]
    client.close()
    leave(again)
