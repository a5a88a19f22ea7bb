"""The reference the store is compared with: a Redis primary and two replicas on loopback.

Each writes an append-only file fsynced every second, the durable setup users weigh us against.
Snapshots (``save``) are off so only the AOF costs disk time, as in that setup; replicas still sync
from an RDB transfer, which Redis does whatever ``save`` says.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from kvcommon.zkserver import pick_free_port
from kvmeta.bench.client import HOST, Connection
from kvmeta.bench.resources import Watched
from kvmeta.nodeclient import info_fields

REPLICAS = 2
STOP_GRACE = 10.0


class RedisReferenceError(Exception):
    pass


class RedisReference:
    """``start()`` three redis-server processes in ``directory`` and wait until both replicas are online."""

    def __init__(self, directory: str | Path, server: str = "redis-server"):
        self.dir = Path(directory)
        self.server = server
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen] = []

    @property
    def port(self) -> int:
        """The primary's port: every load goes there."""
        return self.ports[0]

    def watched(self) -> list[Watched]:
        names = ["redis-primary"] + [f"redis-replica{i}" for i in range(1, len(self.processes))]
        roles = ["primary"] + ["replica"] * (len(self.processes) - 1)
        return [Watched(n, r, p.pid) for n, r, p in zip(names, roles, self.processes)]

    def start(self, timeout: float = 30.0) -> RedisReference:
        if shutil.which(self.server) is None:
            raise RedisReferenceError(f"{self.server} is not installed (Debian package redis-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        for index in range(1 + REPLICAS):
            port = pick_free_port(HOST, exclude=set(self.ports))
            self.ports.append(port)
            self._launch(index, port)
            self._wait(lambda p=port: _ping(p), deadline, f"redis-server on port {port} to answer PING")
        self._wait(self._replicas_online, deadline, "both replicas to be online")
        return self

    def _launch(self, index: int, port: int) -> None:
        name = "primary" if index == 0 else f"replica{index}"
        data = self.dir / name
        data.mkdir(exist_ok=True)
        argv = [
            self.server, "--port", str(port), "--bind", HOST, "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--logfile", str(self.dir / f"{name}.log"), "--daemonize", "no", "--protected-mode", "no",
        ]
        if index:
            argv += ["--replicaof", HOST, str(self.ports[0])]
        # A session of its own: ^C reaches only the benchmark, which then stops Redis in order.
        self.processes.append(
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        )

    def _wait(self, condition, deadline: float, what: str) -> None:
        while not condition():
            for process in self.processes:
                if process.poll() is not None:
                    raise RedisReferenceError(f"redis-server exited with code {process.returncode}; see {self.dir}")
            if time.monotonic() > deadline:
                raise RedisReferenceError(f"timed out waiting for {what}; see the logs in {self.dir}")
            time.sleep(0.1)

    def _replicas_online(self) -> bool:
        info = self.info_replication()
        online = [v for k, v in info.items() if k.startswith("slave") and "state=online" in v]
        return len(online) == REPLICAS

    def info_replication(self) -> dict[str, str]:
        with Connection(self.port) as conn:
            return info_fields(conn.call("INFO", "replication"))

    def wait_in_sync(self, timeout: float = 60.0) -> None:
        """Wait until both replicas have acknowledged everything the primary wrote so far."""

        def caught_up() -> bool:
            info = self.info_replication()
            target = int(info["master_repl_offset"])
            offsets = [_field(v, "offset") for k, v in info.items() if k.startswith("slave")]
            return len(offsets) == REPLICAS and all(o >= target for o in offsets)

        self._wait(caught_up, time.monotonic() + timeout, "the replicas to catch up")

    def stop(self) -> None:
        """Stop replicas first, then the primary: SIGTERM (Redis fsyncs its AOF), SIGKILL after a grace."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> RedisReference:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _ping(port: int) -> bool:
    try:
        with Connection(port, timeout=1.0) as conn:
            return conn.call("PING") == b"PONG"
    except OSError:
        return False


def _field(value: str, name: str) -> int:
    """A field of an INFO replication line such as ``ip=127.0.0.1,port=7001,state=online,offset=42,lag=0``."""
    fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
    return int(fields.get(name, -1))
