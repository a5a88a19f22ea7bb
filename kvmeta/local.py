"""A development cluster on this machine: ZooKeeper, storage nodes, a controller and a proxy on 127.0.0.1.

``kvctl local up --dir DIR`` starts every process in the background (each in a session of its own, so
they outlive the command) and records them in ``DIR/cluster.json``: role, id, address, pid, log and the
command that starts it again. ``down``, ``start``, ``stop`` and ``status`` work from that file, so any
later ``kvctl`` run can manage the cluster. The test harness drives the same code through
``LocalCluster`` without click.

Layout of DIR::

    cluster.json        the processes and how to start them
    logs/<id>.log       stdout and stderr of each process (appended to across restarts)
    zookeeper/          ZooKeeper's data and zoo.cfg (when the cluster runs its own)
    <node id>/          a node's LevelDB
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import click
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.retry import KazooRetry

from kvcommon.zkserver import (
    ZooKeeperError,
    ZooKeeperServer,
    is_serving,
    pick_free_port,
    port_is_free,
    signal_process,
    tail,
)
from kvmeta.schema import WRITE_LEVELS, ClusterConfig, ClusterPaths, NodeRecord, PartitionState

CLUSTER_FILE = "cluster.json"
FILE_FORMAT = 1
HOST = "127.0.0.1"

DEFAULT_DIR = "local-cluster"
DEFAULT_NODES = 3
DEFAULT_PARTITIONS = 16
DEFAULT_REPLICATION_FACTOR = 3
DEFAULT_PROXY_PORT = 6380
DEFAULT_CLUSTER = "local"
DEFAULT_WRITE_LEVEL = "quorum"
DEFAULT_TIMEOUT = 60.0

ZOOKEEPER_ID = "zookeeper"
# Roles in start order; `down` stops them in the reverse order, ZooKeeper last.
ROLES = ("zookeeper", "node", "controller", "proxy")
ID_PREFIXES = {"node": "node", "controller": "meta", "proxy": "proxy"}
SERVER_ENTRY_POINTS = {
    "node": ("kvnode", "kvnode.main"),
    "controller": ("kvmeta", "kvmeta.main"),
    "proxy": ("kvproxy", "kvproxy.main"),
}
# The controller places replicas best when it sees every node from the start, so `up` gives the nodes
# this long to register before starting it (it starts the controller anyway afterwards).
NODE_REGISTRATION_WAIT = 15.0
STOP_GRACE = 10.0
ZK_CONNECT_TIMEOUT = 15.0
LOG_TAIL_LINES = 30

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class LocalClusterError(click.ClickException):
    """A local cluster operation failed; the message says what happened and what to do."""


class ProcessDiedError(LocalClusterError):
    def __init__(self, spec: ProcessSpec, returncode: int | None):
        self.process_id = spec.id
        self.returncode = returncode
        if returncode is None:
            how = "is no longer running"
        elif returncode < 0:
            how = f"was killed by {signal.Signals(-returncode).name}"
        else:
            how = f"exited with code {returncode}"
        log_end = _indent(tail(spec.log, LOG_TAIL_LINES))
        super().__init__(f"{spec.id} ({spec.role}) {how}; the end of {spec.log}:\n{log_end}")


class ClusterNotReadyError(LocalClusterError):
    def __init__(self, message: str, pending: list[tuple[str, str]]):
        self.pending = pending
        super().__init__(message)


@dataclass
class ProcessSpec:
    """One process of the cluster as recorded in cluster.json.

    ``pid`` is None when the process was stopped on purpose; a recorded pid whose process is gone means
    it crashed. ``start_ticks`` (the kernel's start time of the pid) tells a reused pid from ours.
    """

    role: str
    id: str
    host: str
    port: int | None
    argv: list[str]
    log: str
    pid: int | None = None
    start_ticks: int | None = None
    data_dir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # A port the user chose: never replaced by another one when it is taken.
    fixed_port: bool = False

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> ProcessSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class ClusterFile:
    """The contents of ``DIR/cluster.json``."""

    cluster: str
    zk: str
    zk_managed: bool
    partitions: int
    replication_factor: int
    write_level: str
    processes: list[ProcessSpec] = field(default_factory=list)
    host: str = HOST
    format: int = FILE_FORMAT

    def get(self, process_id: str) -> ProcessSpec | None:
        return next((p for p in self.processes if p.id == process_id), None)

    def by_role(self, role: str) -> list[ProcessSpec]:
        return [p for p in self.processes if p.role == role]

    def ports(self) -> set[int]:
        return {p.port for p in self.processes if p.port}

    def to_json(self) -> str:
        raw = asdict(self)
        raw["processes"] = [p.to_dict() for p in self.processes]
        return json.dumps(raw, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterFile:
        raw = json.loads(text)
        if raw.get("format", FILE_FORMAT) > FILE_FORMAT:
            raise LocalClusterError(
                f"cluster.json has format {raw['format']}, newer than this kvctl understands ({FILE_FORMAT})"
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["processes"] = [ProcessSpec.from_dict(p) for p in raw.get("processes", [])]
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> ClusterFile:
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise LocalClusterError(f"{path} is not a valid cluster file: {exc}") from exc

    def write(self, path: Path) -> None:
        # Replace atomically so a concurrent reader never sees half a file.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(self.to_json())
        os.replace(temporary, path)


def cluster_from_dir(directory: str | os.PathLike) -> tuple[str, str]:
    """The ZooKeeper address and cluster name of the local cluster in ``directory``."""
    state = _read_cluster_file(Path(directory))
    return state.zk, state.cluster


def _read_cluster_file(directory: Path) -> ClusterFile:
    path = directory / CLUSTER_FILE
    try:
        return ClusterFile.read(path)
    except FileNotFoundError:
        raise LocalClusterError(
            f"no local cluster in {directory}: {path} does not exist "
            f"(start one with `kvctl local up --dir {shlex.quote(str(directory))}`)"
        ) from None


class Reporter:
    """Receives what a cluster operation is doing. The default says nothing; the CLI prints."""

    def event(self, message: str) -> None:
        """Something happened (a process started or stopped)."""

    def status(self, message: str) -> None:
        """What is being waited for right now; replaces the previous status."""


def server_command(role: str) -> list[str]:
    """The command that runs the server of ``role``, before its flags.

    The console script next to the running interpreter when the project is installed (readable in
    ``ps``); otherwise the entry point called through the same interpreter, which needs neither an
    install nor a ``__main__`` block in the server module.
    """
    script, module = SERVER_ENTRY_POINTS[role]
    installed = Path(sys.executable).parent / script
    if installed.is_file() and os.access(installed, os.X_OK):
        return [str(installed)]
    bootstrap = f"import sys; sys.argv[0] = {script!r}; from {module} import main; sys.exit(main())"
    return [sys.executable, "-c", bootstrap]


def server_env() -> dict[str, str]:
    """Environment additions for server processes: import this source tree, write logs at once."""
    path = [str(PROJECT_ROOT)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}


def process_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (Linux); None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[19])


def process_is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` runs and is the process that started at ``start_ticks`` (not a reuse of the pid).

    A zombie counts as dead; one that is our own child is reaped on the way.
    """
    if _reaped(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the pid was reused
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all we can know
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        _reaped(pid)  # it may have died since the first look
        return False
    return start_ticks is None or int(rest[19]) == start_ticks


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it is our child and has exited; whether it was."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # not our child: its parent (or init) reaps it
    return reaped == pid


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a RESP server at ``host:port`` answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n") and len(reply) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"+PONG")


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) or f"{prefix}(empty)"


def _id_number(process_id: str) -> int:
    match = re.search(r"(\d+)$", process_id)
    return int(match.group(1)) if match else 0


class LocalCluster:
    """A local cluster rooted at ``directory``.

    Arguments left as None take the value recorded in ``DIR/cluster.json`` or, for a new directory, the
    default. An explicit argument that contradicts the recorded cluster is an error, except ``nodes``,
    which may grow it. ``zk`` uses an existing ZooKeeper instead of starting one; ``proxy_port=0``
    picks a free port (as tests do).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        nodes: int | None = None,
        partitions: int | None = None,
        replication_factor: int | None = None,
        write_level: str | None = None,
        cluster: str | None = None,
        zk: str | None = None,
        proxy_port: int | None = None,
        proxies: int | None = None,
        controllers: int | None = None,
        reporter: Reporter | None = None,
    ):
        self.dir = Path(directory).resolve()
        self.reporter = reporter or Reporter()
        self._requested = {
            "nodes": nodes,
            "partitions": partitions,
            "replication_factor": replication_factor,
            "write_level": write_level,
            "cluster": cluster,
            "zk": zk,
            "proxy_port": proxy_port,
            "proxies": proxies,
            "controllers": controllers,
        }
        # Processes this object started: waited for when they exit so they never linger as zombies.
        self._children: dict[str, subprocess.Popen] = {}
        self._paused: set[str] = set()
        # When the current operation began: timeouts are reported against it.
        self._started_at = time.monotonic()
        path = self.dir / CLUSTER_FILE
        self.state: ClusterFile | None = ClusterFile.read(path) if path.exists() else None
        if self.state is not None:
            self._check_requested_against(self.state)
        else:
            self._validate_new()

    @classmethod
    def load(cls, directory: str | os.PathLike, reporter: Reporter | None = None) -> LocalCluster:
        """The cluster recorded in ``directory``; raises ``LocalClusterError`` if there is none."""
        _read_cluster_file(Path(directory).resolve())
        return cls(directory, reporter=reporter)

    # -- what the cluster is

    @property
    def cluster_file(self) -> Path:
        return self.dir / CLUSTER_FILE

    @property
    def name(self) -> str:
        return self._state().cluster

    @property
    def zk_address(self) -> str:
        return self._state().zk

    @property
    def paths(self) -> ClusterPaths:
        return ClusterPaths(self.name)

    @property
    def config(self) -> ClusterConfig:
        state = self._state()
        return ClusterConfig(state.partitions, state.replication_factor, state.write_level)

    @property
    def processes(self) -> list[ProcessSpec]:
        return list(self._state().processes)

    def process(self, process_id: str) -> ProcessSpec:
        spec = self._state().get(process_id)
        if spec is None:
            known = ", ".join(p.id for p in self._state().processes)
            raise LocalClusterError(f"no process {process_id!r} in {self.dir} (it has {known})")
        return spec

    def ids(self, role: str) -> list[str]:
        return [p.id for p in self._state().by_role(role)]

    @property
    def node_ids(self) -> list[str]:
        return self.ids("node")

    @property
    def proxy_addresses(self) -> list[str]:
        return [p.address for p in self._state().by_role("proxy") if p.address]

    @property
    def proxy_port(self) -> int:
        """The port of the first proxy, where clients connect."""
        proxies = self._state().by_role("proxy")
        if not proxies:
            raise LocalClusterError(f"the cluster in {self.dir} has no proxy")
        return proxies[0].port

    def is_running(self, process_id: str) -> bool:
        return self._is_running(self.process(process_id))

    def log_tail(self, process_id: str, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.process(process_id).log, lines)

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> list[tuple[str, str]]:
        """``(title, tail)`` for every process's log: what a failed test report shows."""
        if self.state is None:
            return []
        return [(f"{spec.id} log ({spec.log})", tail(spec.log, lines)) for spec in self.state.processes]

    # -- starting

    def up(self, timeout: float = DEFAULT_TIMEOUT) -> LocalCluster:
        """Start every process that is not running and wait until the cluster serves clients.

        Raises ``ProcessDiedError`` as soon as a process exits, ``ClusterNotReadyError`` after
        ``timeout`` seconds; the processes started so far keep running (``down`` stops them).
        """
        self._started_at = time.monotonic()
        deadline = self._started_at + timeout
        if self.state is None and self._requested["proxies"] != 0:
            # Refuse before cluster.json records a port that cannot be used.
            port = self._requested["proxy_port"]
            self._check_port_free("proxy1", DEFAULT_PROXY_PORT if port is None else port)
        state = self.prepare()
        for spec in state.processes:
            if spec.fixed_port and not self._is_running(spec):
                self._check_port_free(spec.id, spec.port)
        zookeeper = state.get(ZOOKEEPER_ID)
        if zookeeper is not None:
            self._launch_unless_running(zookeeper)
            self._poll_until(lambda: self._pending([zookeeper], None), deadline)
        self.reporter.status(f"connecting to ZooKeeper at {state.zk}")
        with self._zk_session(deadline) as client:
            self._ensure_config(client)
            self.reporter.status("starting nodes")
            nodes = state.by_role("node")
            for spec in nodes:
                self._launch_unless_running(spec)
            registration_deadline = min(deadline, time.monotonic() + NODE_REGISTRATION_WAIT)
            self._poll_until(lambda: self._pending(nodes, client), registration_deadline, give_up=False)
            self.reporter.status("starting the controller and the proxy")
            for spec in state.by_role("controller") + state.by_role("proxy"):
                self._launch_unless_running(spec)
            self._wait_ready(client, deadline)
        self.reporter.status("")
        return self

    @staticmethod
    def _check_port_free(process_id: str, port: int | None) -> None:
        if port and not port_is_free(HOST, port):
            raise LocalClusterError(
                f"port {port} for {process_id} is in use (another local cluster or a redis-server?): "
                f"choose another with --proxy-port, or stop what listens there"
            )

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until every running process is ready and every partition has a live primary.

        Processes stopped with ``stop`` are not waited for; one that died on its own raises
        ``ProcessDiedError``.
        """
        self._started_at = time.monotonic()
        deadline = self._started_at + timeout
        with self._zk_session(deadline) as client:
            self._wait_ready(client, deadline)

    def start(self, process_id: str, wait: bool = True, timeout: float = 30.0) -> ProcessSpec:
        """Start a stopped or crashed process again with its recorded command.

        With ``wait``, return once it is ready: ZooKeeper serves, a node has registered, a proxy answers
        ``PING``.
        """
        spec = self.process(process_id)
        if self._is_running(spec):
            return spec
        self._launch(spec)
        if wait:
            self._started_at = time.monotonic()
            deadline = self._started_at + timeout
            if spec.role == "node":
                with self._zk_session(deadline) as client:
                    self._poll_until(lambda: self._pending([spec], client), deadline, watch=[spec])
            else:
                self._poll_until(lambda: self._pending([spec], None), deadline, watch=[spec])
            self.reporter.status("")
        return spec

    def add_node(self, wait: bool = True, timeout: float = 30.0) -> str:
        """Add a storage node, start it and return its id."""
        return self._add("node", port=0, wait=wait, timeout=timeout)

    def add_proxy(self, port: int = 0, wait: bool = True, timeout: float = 30.0) -> str:
        """Add a proxy (on ``port``, or a free one), start it and return its id."""
        return self._add("proxy", port=port, wait=wait, timeout=timeout)

    def add_controller(self, wait: bool = True, timeout: float = 30.0) -> str:
        """Add another controller (they elect a leader among themselves) and return its id."""
        return self._add("controller", port=None, wait=wait, timeout=timeout)

    def _add(self, role: str, port: int | None, wait: bool, timeout: float) -> str:
        state = self._state()
        spec = self._new_spec(state, role, port)
        state.processes.append(spec)
        self._save()
        self.start(spec.id, wait=wait, timeout=timeout)
        return spec.id

    # -- stopping and faults

    def stop(self, process_id: str, kill: bool = False, grace: float = STOP_GRACE) -> None:
        """Stop one process: SIGTERM (SIGKILL after ``grace`` seconds), or SIGKILL at once with ``kill``."""
        self._stop([self.process(process_id)], kill=kill, grace=grace)

    def kill(self, process_id: str) -> None:
        self.stop(process_id, kill=True)

    def down(self, grace: float = STOP_GRACE) -> list[str]:
        """Stop every process, ZooKeeper last, and return the ids of those that were running.

        Doing nothing is fine: a directory without a cluster, or a cluster already down.
        """
        if self.state is None:
            return []
        stopped = []
        for roles in (("proxy", "controller", "node"), ("zookeeper",)):
            group = [p for role in roles for p in self.state.by_role(role)]
            stopped += self._stop(group, kill=False, grace=grace)
        return stopped

    def pause(self, process_id: str) -> None:
        """Freeze a process (SIGSTOP): its connections stay open but it does nothing, like a long stall."""
        self._signal_running(self.process(process_id), signal.SIGSTOP)
        self._paused.add(process_id)

    def resume(self, process_id: str) -> None:
        self._signal_running(self.process(process_id), signal.SIGCONT)
        self._paused.discard(process_id)

    def _signal_running(self, spec: ProcessSpec, sig: int) -> None:
        if not self._is_running(spec):
            raise LocalClusterError(f"{spec.id} is not running")
        signal_process(spec.pid, sig)

    def _stop(self, specs: list[ProcessSpec], kill: bool, grace: float) -> list[str]:
        running = [spec for spec in specs if self._is_running(spec)]
        for spec in running:
            signal_process(spec.pid, signal.SIGKILL if kill else signal.SIGTERM)
            if not kill:
                # A paused process cannot act on SIGTERM until it runs again.
                signal_process(spec.pid, signal.SIGCONT)
        remaining = self._wait_exit(running, grace)
        for spec in remaining:
            signal_process(spec.pid, signal.SIGKILL)
        remaining = self._wait_exit(remaining, STOP_GRACE)
        if remaining:
            raise LocalClusterError(
                "could not stop " + ", ".join(f"{s.id} (pid {s.pid})" for s in remaining) + " even with SIGKILL"
            )
        for spec in specs:
            spec.pid = None
            spec.start_ticks = None
            self._children.pop(spec.id, None)
            self._paused.discard(spec.id)
            if spec in running:
                self.reporter.event(f"stopped {spec.id}" + (" (killed)" if kill else ""))
        if specs:
            self._save()
        return [spec.id for spec in running]

    def _wait_exit(self, specs: list[ProcessSpec], timeout: float) -> list[ProcessSpec]:
        deadline = time.monotonic() + timeout
        remaining = list(specs)
        while remaining:
            remaining = [spec for spec in remaining if self._is_running(spec)]
            if not remaining or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return remaining

    # -- process bookkeeping

    def _state(self) -> ClusterFile:
        if self.state is None:
            self.state = _read_cluster_file(self.dir)
        return self.state

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._state().write(self.cluster_file)

    def _is_running(self, spec: ProcessSpec) -> bool:
        if spec.pid is None:
            return False
        child = self._children.get(spec.id)
        if child is not None and child.pid == spec.pid:
            return child.poll() is None
        return process_is_alive(spec.pid, spec.start_ticks)

    def _returncode(self, spec: ProcessSpec) -> int | None:
        child = self._children.get(spec.id)
        return child.returncode if child is not None and child.pid == spec.pid else None

    def _launch_unless_running(self, spec: ProcessSpec) -> None:
        if not self._is_running(spec):
            self._launch(spec)

    def _launch(self, spec: ProcessSpec) -> None:
        log = Path(spec.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        if spec.data_dir:
            Path(spec.data_dir).mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"=== {stamp} starting {spec.id}: {shlex.join(spec.argv)}\n".encode())
            out.flush()
            try:
                child = subprocess.Popen(
                    spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                    env={**os.environ, **spec.env},
                    # Its own session: the cluster outlives `kvctl local up`, and a ^C there does not
                    # reach it.
                    start_new_session=True,
                )
            except OSError as exc:
                raise LocalClusterError(f"cannot start {spec.id} ({spec.argv[0]}): {exc}") from exc
        spec.pid = child.pid
        spec.start_ticks = process_start_ticks(child.pid)
        self._children[spec.id] = child
        self._save()
        where = f" on {spec.address}" if spec.address else ""
        self.reporter.event(f"started {spec.id}{where} (pid {spec.pid}, log {spec.log})")

    # -- creating and updating cluster.json

    def _validate_new(self) -> None:
        r = self._requested
        nodes = r["nodes"] if r["nodes"] is not None else DEFAULT_NODES
        rf = r["replication_factor"] if r["replication_factor"] is not None else DEFAULT_REPLICATION_FACTOR
        try:
            ClusterConfig(
                r["partitions"] if r["partitions"] is not None else DEFAULT_PARTITIONS,
                rf,
                r["write_level"] or DEFAULT_WRITE_LEVEL,
            )
            ClusterPaths(r["cluster"] or DEFAULT_CLUSTER)
        except ValueError as exc:
            raise LocalClusterError(str(exc)) from exc
        if nodes < 1:
            raise LocalClusterError(f"a cluster needs at least one node, not {nodes}")
        if rf > nodes:
            raise LocalClusterError(f"replication factor {rf} needs at least {rf} nodes, not {nodes}")

    def _check_requested_against(self, state: ClusterFile) -> None:
        r = self._requested
        recorded = {
            "cluster": state.cluster,
            "partitions": state.partitions,
            "replication_factor": state.replication_factor,
            "write_level": state.write_level,
        }
        for name, value in recorded.items():
            if r[name] is not None and r[name] != value:
                raise LocalClusterError(
                    f"{self.dir} holds cluster {state.cluster!r} created with "
                    f"--{name.replace('_', '-')} {value}, not {r[name]}: leave the option out, or run "
                    f"`kvctl local down` and remove {self.dir} to start afresh"
                )
        if r["zk"] is not None and (state.zk_managed or r["zk"] != state.zk):
            own = "its own ZooKeeper" if state.zk_managed else f"ZooKeeper at {state.zk}"
            raise LocalClusterError(f"{self.dir} holds a cluster that uses {own}, not --zk {r['zk']}")
        recorded_nodes = len(state.by_role("node"))
        if r["nodes"] is not None and r["nodes"] < recorded_nodes:
            raise LocalClusterError(f"{self.dir} holds a cluster of {recorded_nodes} nodes; `up` does not remove nodes")

    def prepare(self) -> ClusterFile:
        """Write cluster.json without starting anything: a new cluster's processes (with free ports), or
        for a recorded one the requested extra nodes and fresh commands and ports for what is stopped."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.state is None:
            self.state = self._new_state()
        else:
            self._refresh_state(self.state)
        self._save()
        return self.state

    def _new_state(self) -> ClusterFile:
        r = self._requested
        state = ClusterFile(
            cluster=r["cluster"] or DEFAULT_CLUSTER,
            zk=r["zk"] or "",
            zk_managed=r["zk"] is None,
            partitions=r["partitions"] if r["partitions"] is not None else DEFAULT_PARTITIONS,
            replication_factor=(
                r["replication_factor"] if r["replication_factor"] is not None else DEFAULT_REPLICATION_FACTOR
            ),
            write_level=r["write_level"] or DEFAULT_WRITE_LEVEL,
        )
        if state.zk_managed:
            zookeeper = ProcessSpec(
                role="zookeeper",
                id=ZOOKEEPER_ID,
                host=HOST,
                port=pick_free_port(HOST),
                argv=[],
                log=str(self.dir / "logs" / f"{ZOOKEEPER_ID}.log"),
                data_dir=str(self.dir / "zookeeper"),
            )
            state.processes.append(zookeeper)
            state.zk = zookeeper.address
        nodes = r["nodes"] if r["nodes"] is not None else DEFAULT_NODES
        controllers = r["controllers"] if r["controllers"] is not None else 1
        proxies = r["proxies"] if r["proxies"] is not None else 1
        proxy_port = r["proxy_port"] if r["proxy_port"] is not None else DEFAULT_PROXY_PORT
        for _ in range(nodes):
            state.processes.append(self._new_spec(state, "node", 0))
        for _ in range(controllers):
            state.processes.append(self._new_spec(state, "controller", None))
        for index in range(proxies):
            state.processes.append(self._new_spec(state, "proxy", proxy_port if index == 0 else 0))
        self._build_commands(state)
        return state

    def _new_spec(self, state: ClusterFile, role: str, port: int | None) -> ProcessSpec:
        """A new process of ``role``; ``port`` 0 picks a free one, None means it listens on none."""
        prefix = ID_PREFIXES[role]
        number = 1 + max((_id_number(p.id) for p in state.by_role(role)), default=0)
        process_id = f"{prefix}{number}"
        spec = ProcessSpec(
            role=role,
            id=process_id,
            host=state.host,
            port=None if port is None else (port or pick_free_port(state.host, exclude=state.ports())),
            argv=[],
            log=str(self.dir / "logs" / f"{process_id}.log"),
            data_dir=str(self.dir / process_id) if role == "node" else None,
            fixed_port=bool(port),
        )
        spec.argv, spec.env = self._command(state, spec)
        return spec

    def _refresh_state(self, state: ClusterFile) -> None:
        """Grow to the requested node count and give stopped processes free ports and current commands."""
        for spec in state.processes:
            if spec.pid is not None and not self._is_running(spec):
                spec.pid = spec.start_ticks = None  # crashed since: `up` starts it again
        proxies = state.by_role("proxy")
        port = self._requested["proxy_port"]
        # An explicit --proxy-port moves a stopped first proxy; 0 turns a chosen port into a free one.
        if proxies and port is not None and (port != proxies[0].port if port else proxies[0].fixed_port):
            first = proxies[0]
            if self._is_running(first):
                raise LocalClusterError(
                    f"{first.id} is running on port {first.port}: stop it first to move it to another port"
                )
            first.port = port or pick_free_port(first.host, exclude=state.ports())
            first.fixed_port = bool(port)
        wanted = self._requested["nodes"]
        while wanted is not None and len(state.by_role("node")) < wanted:
            state.processes.append(self._new_spec(state, "node", 0))
        anything_running = any(self._is_running(p) for p in state.processes)
        for spec in state.processes:
            if self._is_running(spec) or not spec.port or spec.fixed_port:
                continue
            # Everything else holds ZooKeeper's address: it may move only while nothing runs.
            if spec.role == "zookeeper" and anything_running:
                continue
            if not port_is_free(spec.host, spec.port):
                old = spec.port
                spec.port = pick_free_port(spec.host, exclude=state.ports())
                self.reporter.event(f"{spec.id}: port {old} is taken, using {spec.port}")
        zookeeper = state.get(ZOOKEEPER_ID)
        if zookeeper is not None and not anything_running:
            state.zk = zookeeper.address
        self._build_commands(state, only_stopped=True)

    def _build_commands(self, state: ClusterFile, only_stopped: bool = False) -> None:
        for spec in state.processes:
            if only_stopped and self._is_running(spec):
                continue
            spec.argv, spec.env = self._command(state, spec)

    def _command(self, state: ClusterFile, spec: ProcessSpec) -> tuple[list[str], dict[str, str]]:
        if spec.role == "zookeeper":
            server = ZooKeeperServer(spec.data_dir, port=spec.port, host=spec.host, log_path=spec.log, detach=True)
            try:
                server.write_config()
                return server.argv, {}
            except ZooKeeperError as exc:
                raise LocalClusterError(f"{exc} (or pass --zk HOST:PORT to use a running one)") from exc
        argv = [*server_command(spec.role), "--zk", state.zk, "--cluster", state.cluster, "--id", spec.id]
        if spec.role in ("node", "proxy"):
            argv += ["--host", spec.host, "--port", str(spec.port)]
        if spec.role == "node":
            argv += ["--data-dir", spec.data_dir]
        return argv, server_env()

    # -- ZooKeeper and readiness

    @contextlib.contextmanager
    def _zk_session(self, deadline: float) -> Iterator[KazooClient]:
        address = self.zk_address
        client = KazooClient(
            hosts=address,
            timeout=5.0,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
        )
        try:
            client.start(timeout=min(ZK_CONNECT_TIMEOUT, max(1.0, deadline - time.monotonic())))
        except client.handler.timeout_exception:
            client.close()
            raise LocalClusterError(f"cannot reach ZooKeeper at {address}") from None
        try:
            yield client
        finally:
            client.stop()
            client.close()

    def _ensure_config(self, client: KazooClient) -> None:
        """Create the cluster in ZooKeeper, or keep the one there if it has the same partition count."""
        state = self._state()
        wanted = self.config
        try:
            client.create(self.paths.config, wanted.encode(), makepath=True)
            self.reporter.event(
                f"created cluster {state.cluster!r}: {wanted.partitions} partitions, "
                f"replication factor {wanted.replication_factor}, write level {wanted.write_level}"
            )
            return
        except NodeExistsError:
            pass
        data, _ = client.get(self.paths.config)
        existing = ClusterConfig.decode(data)
        if existing.partitions != wanted.partitions:
            raise LocalClusterError(
                f"cluster {state.cluster!r} already exists in ZooKeeper at {state.zk} with "
                f"{existing.partitions} partitions, not {wanted.partitions}; the partition count never "
                f"changes: use --partitions {existing.partitions} or another --cluster name"
            )
        if existing != wanted:
            self.reporter.event(f"cluster {state.cluster!r} exists in ZooKeeper; keeping its settings {existing}")
            state.replication_factor = existing.replication_factor
            state.write_level = existing.write_level
            self._save()

    def _wait_ready(self, client: KazooClient, deadline: float) -> None:
        self._poll_until(lambda: self._pending(self._state().processes, client, partitions=True), deadline)

    def _poll_until(
        self,
        pending: Callable[[], list[tuple[str, str]]],
        deadline: float,
        give_up: bool = True,
        watch: list[ProcessSpec] | None = None,
    ) -> None:
        """Poll until ``pending()`` is empty; a process of ``watch`` (default: all) that dies raises at once.

        After ``deadline``, raise ``ClusterNotReadyError`` (or just return when ``give_up`` is False).
        """
        while True:
            self._check_alive(watch)
            waiting = pending()
            if not waiting:
                return
            self.reporter.status("waiting for " + "; ".join(f"{who}: {why}" for who, why in waiting))
            if time.monotonic() >= deadline:
                if not give_up:
                    return
                raise ClusterNotReadyError(
                    self._not_ready_message(waiting, time.monotonic() - self._started_at), waiting
                )
            time.sleep(0.2)

    def _check_alive(self, specs: list[ProcessSpec] | None = None) -> None:
        for spec in self._state().processes if specs is None else specs:
            if spec.pid is not None and not self._is_running(spec):
                raise ProcessDiedError(spec, self._returncode(spec))

    def _pending(
        self, specs: list[ProcessSpec], client: KazooClient | None, partitions: bool = False
    ) -> list[tuple[str, str]]:
        """``(who, why)`` for everything among ``specs`` (that should run) that is not ready yet."""
        waiting = []
        for spec in specs:
            if spec.pid is None:
                continue
            if spec.role == "zookeeper" and not is_serving(spec.host, spec.port, timeout=1.0):
                waiting.append((spec.id, "not serving yet"))
            elif spec.role == "node" and client is not None:
                reason = self._node_not_ready(spec, client)
                if reason:
                    waiting.append((spec.id, reason))
            elif spec.role == "proxy" and not redis_ping(spec.host, spec.port):
                waiting.append((spec.id, f"no PONG on port {spec.port} yet"))
        if partitions and client is not None:
            reason = self._partitions_not_ready(client)
            if reason:
                controllers = [p.id for p in self._state().by_role("controller")]
                waiting.append((", ".join(controllers) or "controller", reason))
        return waiting

    def _node_not_ready(self, spec: ProcessSpec, client: KazooClient) -> str | None:
        try:
            data, _ = client.get(self.paths.node(spec.id))
        except NoNodeError:
            return "not registered in ZooKeeper yet"
        except KazooException as exc:
            return f"cannot read its registration: {exc!r}"
        try:
            record = NodeRecord.decode(data)
        except (ValueError, TypeError) as exc:
            return f"unreadable registration: {exc}"
        # An earlier run's registration lingers until its ZooKeeper session expires.
        if record.port != spec.port or record.pid not in (0, spec.pid):
            return f"an earlier registration (pid {record.pid}, port {record.port}) has not expired yet"
        return None

    def _partitions_not_ready(self, client: KazooClient) -> str | None:
        count = self._state().partitions
        try:
            live = set(client.get_children(self.paths.nodes))
        except NoNodeError:
            live = set()
        except KazooException as exc:
            return f"cannot read the live nodes: {exc!r}"
        # A node stopped or paused here keeps its registration until its session expires, but serves
        # nothing: its partitions are ready only once the controller has moved them.
        live -= {s.id for s in self._state().by_role("node") if s.pid is None or s.id in self._paused}
        reads = [client.get_async(self.paths.partition(p)) for p in range(count)]
        missing, no_primary, dead_primary = [], [], []
        for partition, read in enumerate(reads):
            try:
                data, _ = read.get(timeout=10)
            except NoNodeError:
                missing.append(partition)
                continue
            except KazooException as exc:
                return f"cannot read the partitions: {exc!r}"
            state = PartitionState.decode(data)
            if state.primary is None:
                no_primary.append(partition)
            elif state.primary not in live:
                dead_primary.append(partition)
        bad = len(missing) + len(no_primary) + len(dead_primary)
        if not bad:
            return None
        details = [
            f"{label} {_some(items)}"
            for label, items in (
                ("not created:", missing),
                ("no primary:", no_primary),
                ("primary not live:", dead_primary),
            )
            if items
        ]
        return f"{count - bad} of {count} partitions have a live primary ({'; '.join(details)})"

    def _not_ready_message(self, waiting: list[tuple[str, str]], waited: float) -> str:
        lines = [f"the cluster in {self.dir} is not ready after {waited:.0f} s:"]
        lines += [f"  {who}: {why}" for who, why in waiting]
        state = self._state()
        for who, _ in waiting:
            for process_id in who.split(", "):
                spec = state.get(process_id)
                if spec is not None:
                    lines.append(f"the end of {spec.log}:")
                    lines.append(_indent(tail(spec.log, LOG_TAIL_LINES)))
        return "\n".join(lines)


def _some(items: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- the `kvctl local` commands


class ConsoleReporter(Reporter):
    """Prints events as lines; shows the status on a live spinner on a terminal, as throttled lines
    otherwise (logs of CI jobs)."""

    PLAIN_STATUS_INTERVAL = 2.0

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self._live = None
        self._last_status = ""
        self._last_status_time = 0.0

    @contextlib.contextmanager
    def showing_status(self, initial: str) -> Iterator[None]:
        if not self.console.is_terminal:
            yield
            return
        with self.console.status(initial) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    def event(self, message: str) -> None:
        self.console.print(message, markup=False, soft_wrap=True)

    def status(self, message: str) -> None:
        if self._live is not None:
            if message:
                self._live.update(message)
            return
        now = time.monotonic()
        if message and message != self._last_status and now - self._last_status_time >= self.PLAIN_STATUS_INTERVAL:
            self.console.print(message, markup=False, soft_wrap=True)
            self._last_status, self._last_status_time = message, now


def _dir_option(function):
    return click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DIR,
        show_default=True,
        help="Directory of the local cluster: its cluster.json, logs and data.",
    )(function)


@click.group()
def local():
    """Run a development cluster on this machine (every process on 127.0.0.1)."""


@local.command("up")
@_dir_option
@click.option("--nodes", type=click.IntRange(1, 64), help=f"Storage nodes.  [default: {DEFAULT_NODES}]")
@click.option(
    "--partitions",
    type=click.IntRange(1, 65536),
    help=f"Partitions (fixed forever).  [default: {DEFAULT_PARTITIONS}]",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(1, 7),
    help=f"Copies of each partition.  [default: {DEFAULT_REPLICATION_FACTOR}]",
)
@click.option(
    "--proxy-port",
    type=click.IntRange(0, 65535),
    help=f"Port clients connect to; 0 picks a free one.  [default: {DEFAULT_PROXY_PORT}]",
)
@click.option("--cluster", "cluster_name", help=f"Cluster name in ZooKeeper.  [default: {DEFAULT_CLUSTER}]")
@click.option(
    "--write-level",
    type=click.Choice(WRITE_LEVELS),
    help=f"Default write level.  [default: {DEFAULT_WRITE_LEVEL}]",
)
@click.option("--zk", metavar="HOST:PORT", help="Use this running ZooKeeper instead of starting one.")
@click.option(
    "--timeout", type=click.FloatRange(1), default=DEFAULT_TIMEOUT, show_default=True, help="Seconds to wait."
)
def up_command(directory, nodes, partitions, replication_factor, proxy_port, cluster_name, write_level, zk, timeout):
    """Start a local cluster in the background, or restart a stopped one with its data."""
    reporter = ConsoleReporter()
    cluster = LocalCluster(
        directory,
        nodes=nodes,
        partitions=partitions,
        replication_factor=replication_factor,
        write_level=write_level,
        cluster=cluster_name,
        zk=zk,
        proxy_port=proxy_port,
        reporter=reporter,
    )
    down_hint = f"kvctl local down --dir {shlex.quote(str(directory))}"
    try:
        with reporter.showing_status("starting"):
            cluster.up(timeout=timeout)
    except (ProcessDiedError, ClusterNotReadyError) as exc:
        if any(p.pid for p in cluster.state.processes):
            exc.message += f"\nthe processes started so far keep running: stop them with `{down_hint}`"
        raise
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; stop what was started with `{down_hint}`") from None
    state = cluster.state
    print(
        f"cluster {state.cluster!r} is ready: {len(state.by_role('node'))} nodes, "
        f"{state.partitions} partitions, replication factor {state.replication_factor}, "
        f"ZooKeeper at {state.zk}"
    )
    print(f"  connect: redis-cli -p {cluster.proxy_port}")
    print(f"  status:  kvctl local status --dir {shlex.quote(str(directory))}")
    print(f"  stop:    {down_hint}")


@local.command("down")
@_dir_option
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=STOP_GRACE,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def down_command(directory, grace):
    """Stop every process of the local cluster (ZooKeeper last). Its data stays for the next `up`."""
    if not (directory / CLUSTER_FILE).exists():
        print(f"no local cluster in {directory}")
        return
    cluster = LocalCluster.load(directory, reporter=ConsoleReporter())
    if not cluster.down(grace=grace):
        print("nothing was running")


@local.command("start")
@click.argument("process_id", metavar="ID")
@_dir_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the process is ready.")
@click.option("--timeout", type=click.FloatRange(1), default=30.0, show_default=True)
def start_command(process_id, directory, wait, timeout):
    """Start one stopped or crashed process (node1, meta1, proxy1, zookeeper ...) again."""
    reporter = ConsoleReporter()
    cluster = LocalCluster.load(directory, reporter=reporter)
    if cluster.is_running(process_id):
        print(f"{process_id} is already running (pid {cluster.process(process_id).pid})")
        return
    with reporter.showing_status(f"starting {process_id}"):
        cluster.start(process_id, wait=wait, timeout=timeout)


@local.command("stop")
@click.argument("process_id", metavar="ID")
@_dir_option
@click.option("--kill", is_flag=True, help="SIGKILL at once, as a crash would, instead of SIGTERM.")
def stop_command(process_id, directory, kill):
    """Stop one process of the local cluster."""
    cluster = LocalCluster.load(directory, reporter=ConsoleReporter())
    if not cluster.is_running(process_id):
        print(f"{process_id} is not running")
        return
    cluster.stop(process_id, kill=kill)


@local.command("status")
@_dir_option
def status_command(directory):
    """List the processes of the local cluster and whether they run."""
    cluster = LocalCluster.load(directory)
    state = cluster.state
    print(f"cluster {state.cluster!r}, ZooKeeper at {state.zk}, {state.partitions} partitions")
    for spec in state.processes:
        running = cluster.is_running(spec.id)
        if running:
            how = f"running (pid {spec.pid})"
        elif spec.pid is None:
            how = "stopped"
        else:
            how = f"dead (pid {spec.pid} exited)"
        print(f"  {spec.id:<10} {spec.role:<10} {spec.address or '-':<16} {how:<22} {spec.log}")
