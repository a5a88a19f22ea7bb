"""A primary cut off by a network partition (Linux network namespaces), while clients keep writing.

Each storage node runs in a network namespace of its own, on a private test network (``kvcommon.testing.netns``);
ZooKeeper listens on the root namespace's address of that network, and the controller and the proxy run in the
root namespace. Cutting the link of the node that is primary of some partitions isolates it from ZooKeeper,
its followers, the controller and the proxy at once. The test checks that:

- the isolated primary acknowledges nothing: a stale route sent to it from inside its namespace gets only
  errors, and after a bounded time (its lease, then its ZooKeeper session) it refuses writes and strong reads
  at once;
- the controller promotes new primaries within a bounded time and writes through the proxy go on;
- once healed, the old primary rejoins as a secondary and holds exactly its primary's data;
- every write the proxy acknowledged reads back with its last acknowledged value (or a later unacknowledged
  one).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from redis.backoff import NoBackoff
from redis.retry import Retry

from kvcommon.hashing import partition_for
from kvcommon.testing.cluster_checks import partition_states, wait_until_converged
from kvcommon.testing.netns import Namespace, TestNetwork, require_network_namespaces
from kvcommon.zkserver import ZooKeeperNotInstalled, ZooKeeperServer, find_zookeeper, pick_free_port, tail
from kvmeta import zk
from kvmeta.local import redis_ping, server_command, server_env
from kvmeta.schema import ClusterConfig, ClusterPaths

pytestmark = pytest.mark.slow

NODES = 3
PARTITIONS = 4
# Every node has a namespace of its own, so they can all listen on the same port.
NODE_PORT = 7400
READY_TIMEOUT = 60.0
STOP_GRACE = 10.0
LOG_TAIL_LINES = 40

WRITERS = 4
KEYS_PER_WRITER = 25
CLIENT_SOCKET_TIMEOUT = 5.0
ACKS_BEFORE_CUT = 100
ACKS_AFTER_PROMOTION = 100
ACKS_TIMEOUT = 20.0

# The node's lease is 1 s and its ZooKeeper session times out after 4 s: past this long after the cut, the
# isolated primary must refuse every write and strong read at once.
REFUSAL_BOUND = 2.5
PROMPT_REPLY = 1.0
PROBE_SECONDS = 4.0
PROBE_INTERVAL = 0.2
# A write it accepted before its lease ran out waits for acknowledgements until the write timeout (10 s).
PROBE_REPLY_TIMEOUT = 15.0
FAILOVER_TIMEOUT = 15.0
REJOIN_TIMEOUT = 30.0
CONVERGE_TIMEOUT = 30.0


# -- a cluster whose nodes live in network namespaces -----------------------------------------------------------


@dataclass
class Process:
    id: str
    host: str
    port: int | None
    popen: subprocess.Popen
    log: Path


class NamespacedCluster:
    """ZooKeeper, controller and proxy in the root namespace, each node in a namespace of its own.

    Offers what ``kvcommon.testing.cluster_checks`` reads from a ``LocalCluster``: ``zk_address``, ``paths``,
    ``process(id)`` with ``host`` and ``port``.
    """

    def __init__(self, directory: Path, name: str, network: TestNetwork, zookeeper: ZooKeeperServer):
        self.dir = directory
        self.name = name
        self.network = network
        self.zookeeper = zookeeper
        self.paths = ClusterPaths(name)
        self.processes: dict[str, Process] = {}
        self.namespaces: dict[str, Namespace] = {}

    @property
    def zk_address(self) -> str:
        return self.zookeeper.address

    @property
    def node_ids(self) -> list[str]:
        return list(self.namespaces)

    def process(self, process_id: str) -> Process:
        return self.processes[process_id]

    def create(self, config: ClusterConfig) -> None:
        with self.zk_session() as client:
            zk.create_cluster(client, self.paths, config)

    def start_node(self, node_id: str, namespace: Namespace) -> None:
        data_dir = self.dir / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [*self._server_args("node", node_id), "--host", namespace.address, "--port", str(NODE_PORT),
                "--data-dir", str(data_dir)]
        self.namespaces[node_id] = namespace
        self._launch(node_id, namespace.address, NODE_PORT, namespace.command(argv))

    def start_controller(self, controller_id: str) -> None:
        self._launch(controller_id, "", None, self._server_args("controller", controller_id))

    def start_proxy(self, proxy_id: str) -> None:
        port = pick_free_port("127.0.0.1")
        argv = [*self._server_args("proxy", proxy_id), "--host", "127.0.0.1", "--port", str(port)]
        self._launch(proxy_id, "127.0.0.1", port, argv)

    def _server_args(self, role: str, process_id: str) -> list[str]:
        return [*server_command(role), "--zk", self.zk_address, "--cluster", self.name, "--id", process_id]

    def _launch(self, process_id: str, host: str, port: int | None, argv: list[str]) -> None:
        log = self.dir / "logs" / f"{process_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **server_env()}, cwd=self.dir)
        self.processes[process_id] = Process(process_id, host, port, popen, log)

    def zk_session(self) -> KazooClient:
        return _KazooSession(self.zk_address)

    def live_nodes(self) -> set[str]:
        with self.zk_session() as client:
            try:
                return set(client.get_children(self.paths.nodes))
            except NoNodeError:
                return set()

    def proxy_client(self, **options) -> redis.Redis:
        proxy = next(p for p in self.processes.values() if p.id.startswith("proxy"))
        options.setdefault("socket_timeout", CLIENT_SOCKET_TIMEOUT)
        return redis.Redis(host=proxy.host, port=proxy.port, protocol=2, decode_responses=True, **options)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Every node registered, every partition with a live primary, the proxy answering PING."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            reason = self._not_ready()
            if reason is None:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster is not ready after {timeout:g} s: {reason}\n{self.log_tails()}")
            time.sleep(0.2)

    def _not_ready(self) -> str | None:
        live = self.live_nodes()
        if live != set(self.namespaces):
            return f"live nodes {sorted(live)}"
        states = partition_states(self)
        if len(states) != PARTITIONS or any(s.primary not in live for s in states.values()):
            return f"partitions {states}"
        proxy = next(p for p in self.processes.values() if p.id.startswith("proxy"))
        if not redis_ping(proxy.host, proxy.port):
            return "the proxy does not answer PING yet"
        return None

    def check_alive(self) -> None:
        dead = {p.id: p.popen.returncode for p in self.processes.values() if p.popen.poll() is not None}
        if dead:
            raise AssertionError(f"processes exited: {dead}\n{self.log_tails()}")

    def stop(self) -> None:
        running = [p for p in self.processes.values() if p.popen.poll() is None]
        for process in running:
            process.popen.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.popen.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=STOP_GRACE)

    def log_tails(self) -> str:
        parts = [f"--- {p.id} ({p.log}) ---\n{tail(p.log, LOG_TAIL_LINES)}" for p in self.processes.values()]
        parts.append(f"--- zookeeper ({self.zookeeper.log_path}) ---\n{self.zookeeper.log_tail(LOG_TAIL_LINES)}")
        return "\n".join(parts)


class _KazooSession:
    def __init__(self, address: str):
        self.client = KazooClient(hosts=address, timeout=5.0)

    def __enter__(self) -> KazooClient:
        self.client.start(timeout=15)
        return self.client

    def __exit__(self, *exc_info) -> None:
        self.client.stop()
        self.client.close()


@pytest.fixture
def cluster(tmp_path: Path, cluster_name: str):
    require_network_namespaces()
    try:
        find_zookeeper()
    except ZooKeeperNotInstalled as exc:
        pytest.skip(str(exc))
    with TestNetwork() as network:
        zookeeper = ZooKeeperServer(tmp_path / "zookeeper", host=network.host_address)
        built = NamespacedCluster(tmp_path, cluster_name, network, zookeeper)
        try:
            zookeeper.start()
            built.create(ClusterConfig(PARTITIONS, replication_factor=3, write_level="quorum"))
            for number in range(1, NODES + 1):
                built.start_node(f"node{number}", network.add_namespace())
            built.start_controller("meta1")
            built.start_proxy("proxy1")
            built.wait_ready()
            yield built
        finally:
            built.stop()
            zookeeper.stop()
            # Shown with the test's report when it fails.
            print(built.log_tails())


# -- clients ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    value: str
    acknowledged: bool
    invoked: float
    completed: float
    error: str | None


@dataclass
class WriteLog:
    """Each key's writes in the order its one writer sent them."""

    writes: dict[str, list[Write]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, write: Write) -> None:
        with self.lock:
            self.writes.setdefault(key, []).append(write)

    def acknowledged_since(self, moment: float) -> int:
        with self.lock:
            return sum(w.acknowledged and w.completed >= moment for ws in self.writes.values() for w in ws)

    def history(self, key: str) -> list[Write]:
        with self.lock:
            return list(self.writes[key])

    def acknowledged_keys(self) -> list[str]:
        with self.lock:
            return [key for key, ws in self.writes.items() if any(w.acknowledged for w in ws)]


def allowed_final_values(writes: list[Write]) -> set[str]:
    """The last acknowledged value, or that of a write sent after it whose outcome is unknown."""
    last_ack = max(i for i, w in enumerate(writes) if w.acknowledged)
    return {w.value for w in writes[last_ack:]}


class Writers:
    """Threads writing through the proxy at level quorum, each to keys of its own.

    With ``overwrite``, each writes its keys in turn again and again with new values; otherwise every write
    goes to a new key.
    """

    def __init__(self, cluster: NamespacedCluster, overwrite: bool):
        self.cluster = cluster
        self.overwrite = overwrite
        self.log = WriteLog()
        self.stop_event = threading.Event()
        self.crashes: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(n,), name=f"writer-{n}") for n in range(WRITERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=2 * CLIENT_SOCKET_TIMEOUT)
        assert not self.crashes, f"a writer failed: {self.crashes!r}"

    def _keys(self, number: int):
        for round_number in itertools.count():
            for k in range(KEYS_PER_WRITER):
                if self.overwrite:
                    yield f"w{number}:{k}", f"w{number}-r{round_number}"
                else:
                    yield f"w{number}:{round_number}:{k}", f"w{number}-r{round_number}"

    def _run(self, number: int) -> None:
        # redis-py must not resend a write itself: the log would not show it.
        connection = self.cluster.proxy_client(retry=Retry(NoBackoff(), 0))
        try:
            for key, value in self._keys(number):
                if self.stop_event.is_set():
                    return
                invoked, error = time.monotonic(), None
                try:
                    acknowledged = connection.set(key, value) is True
                except redis.RedisError as exc:
                    acknowledged, error = False, f"{type(exc).__name__}: {exc}"
                self.log.record(key, Write(value, acknowledged, invoked, time.monotonic(), error))
                if error:
                    time.sleep(0.05)
        except BaseException as exc:
            self.crashes.append(exc)
        finally:
            connection.close()

    def wait_for_acks(self, count: int, since: float) -> None:
        deadline = time.monotonic() + ACKS_TIMEOUT
        while self.log.acknowledged_since(since) < count:
            self.cluster.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.log.acknowledged_since(since)} writes acknowledged in "
                                     f"{ACKS_TIMEOUT:g} s (wanted {count})")
            time.sleep(0.1)


# A client inside the isolated primary's namespace, routing by the generation it last knew (a stale proxy).
# It sends one request every PROBE_INTERVAL seconds, each on a connection of its own, and prints one JSON
# line per reply: when it was sent (seconds after the cut, a wall-clock time), how long the reply took, the reply.
PROBE_SCRIPT = """
import json, sys, threading, time
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

host, port, partition, generation, key, seconds, interval, timeout, cut_at = sys.argv[1:]
started = time.monotonic()
lock = threading.Lock()

def send(number, command):
    sent, sent_at = time.time() - float(cut_at), time.monotonic()
    client = redis.Redis(host=host, port=int(port), protocol=2, socket_timeout=float(timeout),
                         socket_connect_timeout=float(timeout), retry=Retry(NoBackoff(), 0))
    args = ["PX", partition, generation, "-", *command]
    try:
        reply, error = client.execute_command(*args), None
    except redis.RedisError as exc:
        reply, error = None, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    if isinstance(reply, bytes):
        reply = reply.decode(errors="replace")
    with lock:
        print(json.dumps({"command": command[0], "sent": sent, "took": time.monotonic() - sent_at,
                          "reply": reply, "error": error}), flush=True)

threads, number = [], 0
while time.monotonic() - started < float(seconds):
    command = ["SET", key, f"isolated-{number}"] if number % 2 == 0 else ["GET", key]
    thread = threading.Thread(target=send, args=(number, command))
    thread.start()
    threads.append(thread)
    number += 1
    time.sleep(float(interval))
for thread in threads:
    thread.join()
"""


@dataclass
class ProbeReply:
    command: str
    sent: float  # seconds after the cut
    took: float
    reply: str | None
    error: str | None


def start_probe(namespace: Namespace, partition: int, generation: int, key: str, cut_at: float) -> subprocess.Popen:
    argv = [sys.executable, "-c", PROBE_SCRIPT, namespace.address, str(NODE_PORT), str(partition), str(generation),
            key, str(PROBE_SECONDS), str(PROBE_INTERVAL), str(PROBE_REPLY_TIMEOUT), repr(cut_at)]
    return subprocess.Popen(namespace.command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **server_env()})


def probe_replies(probe: subprocess.Popen) -> list[ProbeReply]:
    out, err = probe.communicate(timeout=PROBE_SECONDS + PROBE_REPLY_TIMEOUT + 10)
    assert probe.returncode == 0, f"the probe failed ({probe.returncode}): {err}"
    replies = []
    for line in out.splitlines():
        raw = json.loads(line)
        replies.append(ProbeReply(raw["command"], raw["sent"], raw["took"], raw["reply"], raw["error"]))
    return sorted(replies, key=lambda r: r.sent)


def key_in_partition(partition: int, prefix: str) -> str:
    return next(key for n in range(100_000) if partition_for((key := f"{prefix}{n}").encode(), PARTITIONS) == partition)


# -- waiting for the cluster ------------------------------------------------------------------------------------


def wait_for_promotion(cluster: NamespacedCluster, partitions: set[int], old_primary: str) -> None:
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        states = partition_states(cluster)
        stuck = sorted(p for p in partitions if states[p].primary == old_primary)
        if not stuck:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"partitions {stuck} still have {old_primary} as primary {FAILOVER_TIMEOUT:g} s "
                                 f"after it was cut off\n{cluster.log_tails()}")
        time.sleep(0.2)


def node_roles(cluster: NamespacedCluster, node_id: str) -> dict[int, str]:
    process = cluster.process(node_id)
    client = redis.Redis(host=process.host, port=process.port, protocol=2, socket_timeout=5)
    try:
        flat = client.execute_command("KV.POSITIONS")
    finally:
        client.close()
    return {flat[i]: flat[i + 1].decode() for i in range(0, len(flat), 4)}


def wait_for_rejoin_as_secondary(cluster: NamespacedCluster, node_id: str, partitions: set[int]) -> None:
    deadline = time.monotonic() + REJOIN_TIMEOUT
    while True:
        problem = _rejoin_problem(cluster, node_id, partitions)
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{node_id} has not rejoined as a secondary after {REJOIN_TIMEOUT:g} s: {problem}"
                                 f"\n{cluster.log_tails()}")
        time.sleep(0.3)


def _rejoin_problem(cluster: NamespacedCluster, node_id: str, partitions: set[int]) -> str | None:
    if node_id not in cluster.live_nodes():
        return "it is not registered in ZooKeeper"
    states = partition_states(cluster)
    try:
        roles = node_roles(cluster, node_id)
    except redis.RedisError as exc:
        return f"KV.POSITIONS failed: {exc}"
    for partition in sorted(partitions):
        state = states[partition]
        if state.primary == node_id or node_id not in state.replicas:
            return f"partition {partition} is {state}"
        if roles.get(partition) != "secondary":
            return f"it reports the role {roles.get(partition)!r} for partition {partition}"
    return None


# -- the tests -------------------------------------------------------------------------------------------------


@dataclass
class PartitionEvents:
    victim: str
    victim_partitions: set[int]
    probe: list[ProbeReply]
    cut_at: float  # time.monotonic()
    healed_at: float


def cut_off_a_primary_and_heal(cluster: NamespacedCluster, writers: Writers) -> PartitionEvents:
    """While ``writers`` write: cut off the primary of partition 0, probe it from inside its namespace, wait
    for the new primaries and for more writes, heal, and wait until it is back as a secondary."""
    writers.wait_for_acks(ACKS_BEFORE_CUT, since=0.0)
    states = partition_states(cluster)
    victim = states[0].primary
    victim_partitions = {p for p, s in states.items() if s.primary == victim}
    namespace = cluster.namespaces[victim]

    cut_at, cut_wall_clock = time.monotonic(), time.time()
    cluster.network.cut(namespace)
    probe = start_probe(namespace, 0, states[0].generation, key_in_partition(0, "isolated:"), cut_wall_clock)
    wait_for_promotion(cluster, victim_partitions, victim)
    writers.wait_for_acks(ACKS_AFTER_PROMOTION, since=time.monotonic())
    replies = probe_replies(probe)

    healed_at = time.monotonic()
    cluster.network.heal(namespace)
    wait_for_rejoin_as_secondary(cluster, victim, victim_partitions)
    writers.wait_for_acks(ACKS_AFTER_PROMOTION, since=time.monotonic())
    return PartitionEvents(victim, victim_partitions, replies, cut_at, healed_at)


def partition_under_load(cluster, overwrite: bool) -> tuple[Writers, PartitionEvents]:
    """Cut off a primary and heal it while writers run; the writers, stopped, and what happened."""
    writers = Writers(cluster, overwrite=overwrite)
    writers.start()
    try:
        events = cut_off_a_primary_and_heal(cluster, writers)
    finally:
        writers.stop()
    return writers, events


def test_an_isolated_primary_acknowledges_nothing_and_rejoins_as_a_secondary(cluster):
    writers, events = partition_under_load(cluster, overwrite=False)
    check_isolated_primary_refused(events.probe)
    wait_until_converged(cluster, timeout=CONVERGE_TIMEOUT)
    check_acknowledged_writes_survived(cluster, writers.log, events)


def test_overwritten_keys_keep_their_last_acknowledged_value_across_a_network_partition(cluster):
    writers, events = partition_under_load(cluster, overwrite=True)
    wait_until_converged(cluster, timeout=CONVERGE_TIMEOUT)
    check_acknowledged_writes_survived(cluster, writers.log, events)


def check_isolated_primary_refused(replies: list[ProbeReply]) -> None:
    assert replies, "the probe inside the isolated namespace sent nothing"
    acknowledged = [r for r in replies if r.command == "SET" and r.error is None]
    assert not acknowledged, f"the isolated primary acknowledged writes: {acknowledged}"
    late = [r for r in replies if r.sent >= REFUSAL_BOUND]
    assert late, f"no probe request was sent later than {REFUSAL_BOUND} s after the cut: {replies}"
    served = [r for r in late if r.error is None]
    assert not served, f"the isolated primary still served strong reads {REFUSAL_BOUND} s after the cut: {served}"
    slow = [r for r in late if r.took > PROMPT_REPLY]
    assert not slow, f"the isolated primary took more than {PROMPT_REPLY} s to refuse: {slow}"
    refusals = {r.error.split(":", 1)[0] for r in late}
    assert refusals <= {"TryAgainError", "ResponseError"}, f"unexpected errors from the isolated primary: {late}"


def check_acknowledged_writes_survived(cluster: NamespacedCluster, log: WriteLog, events: PartitionEvents) -> None:
    keys = log.acknowledged_keys()
    client = cluster.proxy_client()
    try:
        values = client.mget(keys)
    finally:
        client.close()
    lost = [describe_lost_write(key, value, log.history(key), events)
            for key, value in zip(keys, values, strict=True) if value not in allowed_final_values(log.history(key))]
    assert not lost, (f"{len(lost)} of {len(keys)} keys lost their last acknowledged value (cut at 0 s, healed at "
                      f"{events.healed_at - events.cut_at:.1f} s):\n" + "\n".join(lost))


def describe_lost_write(key: str, value: str | None, writes: list[Write], events: PartitionEvents) -> str:
    last_ack = [w for w in writes if w.acknowledged][-1]
    found = next((w for w in writes if w.value == value), None)
    if found is None:
        how = "a value never written to it"
    else:
        how = (f"written at {found.invoked - events.cut_at:.2f} s, "
               + ("acknowledged" if found.acknowledged else f"not acknowledged ({found.error})"))
    return (f"  {key} (partition {partition_for(key.encode(), PARTITIONS)}) reads {value!r}: {how}; its last "
            f"acknowledged value {last_ack.value!r} was acknowledged at {last_ack.completed - events.cut_at:.2f} s")
