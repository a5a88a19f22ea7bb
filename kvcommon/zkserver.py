"""Run a standalone ZooKeeper server as a child process, for tests and local development clusters.

The server is the one the system package installs (Debian's ``zookeeper``: ``/usr/share/java/zookeeper.jar``,
whose manifest pulls its dependencies), run with a generated ``zoo.cfg``::

    server = ZooKeeperServer("/tmp/zk")
    server.start()
    client = KazooClient(hosts=server.address)
    ...
    server.restart()    # same port, same data: sessions survive if they reconnect within their timeout
    server.stop()

The tick is short (200 ms) so that clients may ask for session timeouts from 400 ms up, and sessions
expire within a tick of their timeout: a dead node is noticed in about two seconds, not tens of seconds.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
FOUR_LETTER_WORDS = ("ruok", "srvr", "stat", "mntr")
SYSTEM_JAR_DIR = Path("/usr/share/java")
# slf4j bindings to try, in order: without one ZooKeeper logs nothing at all.
SLF4J_BINDINGS = ("slf4j-simple.jar", "slf4j-jdk14.jar")

INSTALL_HINT = "run `make setup` (or `apt-get install zookeeper`)"


class ZooKeeperError(RuntimeError):
    """ZooKeeper could not be found, started or stopped; the message says why and what to do."""


class ZooKeeperNotInstalled(ZooKeeperError):
    pass


@dataclass(frozen=True)
class ZooKeeperInstall:
    """What it takes to run ZooKeeper: a java binary and a class path."""

    java: str
    classpath: tuple[str, ...]

    def command(self, config_path: Path, jvm_options: Sequence[str] = ()) -> list[str]:
        return [self.java, *jvm_options, "-cp", os.pathsep.join(self.classpath), MAIN_CLASS, str(config_path)]


def find_zookeeper() -> ZooKeeperInstall:
    """Locate java and the ZooKeeper jars, or raise ``ZooKeeperNotInstalled`` saying how to install them.

    ``ZOOKEEPER_HOME`` (an unpacked Apache release: ``$ZOOKEEPER_HOME/lib/*.jar``) wins over the system
    package; ``JAVA_HOME`` wins over the java on ``PATH``.
    """
    java = _find_java()
    home = os.environ.get("ZOOKEEPER_HOME")
    if home:
        jars = sorted(str(p) for p in Path(home, "lib").glob("*.jar"))
        if not any(Path(j).name.startswith("zookeeper-") for j in jars):
            raise ZooKeeperNotInstalled(
                f"ZooKeeper is not installed: ZOOKEEPER_HOME={home} has no lib/zookeeper-*.jar; "
                f"unset ZOOKEEPER_HOME or {INSTALL_HINT}"
            )
        return ZooKeeperInstall(java, tuple(jars))
    jar = SYSTEM_JAR_DIR / "zookeeper.jar"
    if not jar.is_file():
        raise ZooKeeperNotInstalled(f"ZooKeeper is not installed: {INSTALL_HINT}")
    classpath = [str(jar)]
    for name in SLF4J_BINDINGS:
        binding = SYSTEM_JAR_DIR / name
        if binding.is_file():
            classpath.append(str(binding))
            break
    return ZooKeeperInstall(java, tuple(classpath))


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperNotInstalled(
            "ZooKeeper is not installed: java was not found on PATH; "
            "run `make setup` (or `apt-get install zookeeper default-jre-headless`)"
        )
    return java


def pick_free_port(host: str = "127.0.0.1", exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A TCP port nobody listens on right now (the kernel's choice for port 0), not in ``exclude``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise OSError(f"could not find a free port on {host}")


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now (with SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def four_letter_word(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send a four-letter command (``ruok``, ``srvr`` ...) and return the reply; raises ``OSError``."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def is_serving(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the server at ``host:port`` answers and serves requests.

    ``ruok`` answers ``imok`` as soon as the port is open, possibly before the database is loaded, so
    ``srvr`` (which reports the server's mode only once it serves) settles it.
    """
    try:
        if four_letter_word(host, port, "ruok", timeout) != "imok":
            return False
        return "Mode:" in four_letter_word(host, port, "srvr", timeout)
    except OSError:
        return False


def tail(path: str | os.PathLike, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def signal_process(pid: int, sig: int) -> None:
    """Signal a process and, if it leads its own process group, everything it started."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_until_stopped(pid: int, timeout: float = 10.0) -> None:
    """Wait until every thread of ``pid`` is stopped by a signal (state T in /proc), or it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            return
        states = []
        for task in tasks:
            try:
                states.append(Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
        if all(state in ("T", "t") for state in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop within {timeout:.0f}s of SIGSTOP")
        time.sleep(0.01)


class ZooKeeperServer:
    """One standalone ZooKeeper server listening on ``host:port``, its data and log in ``data_dir``.

    ``port=0`` picks a free loopback port once; restarts keep it so clients can reconnect. With
    ``detach=True`` the server runs in a session of its own and outlives the Python process (local
    clusters); otherwise it shares the caller's terminal signals (a ^C in pytest stops it too).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        port: int = 0,
        host: str = "127.0.0.1",
        tick_ms: int = 200,
        max_session_timeout_ms: int = 60_000,
        log_path: str | os.PathLike | None = None,
        heap_mb: int = 256,
        detach: bool = False,
        install: ZooKeeperInstall | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.tick_ms = tick_ms
        self.min_session_timeout_ms = 2 * tick_ms
        self.max_session_timeout_ms = max(max_session_timeout_ms, self.min_session_timeout_ms)
        self.log_path = Path(log_path).resolve() if log_path else self.data_dir / "zookeeper.log"
        self.config_path = self.data_dir / "zoo.cfg"
        self.heap_mb = heap_mb
        self.detach = detach
        self._install = install
        # An automatically chosen port may be taken by someone else before the server binds it; such a
        # port is replaced at the first start, never afterwards (clients already know the address).
        self._port_is_ours = port == 0
        self.port = port or pick_free_port(host)
        self._process: subprocess.Popen | None = None
        self._started_once = False

    @property
    def install(self) -> ZooKeeperInstall:
        if self._install is None:
            self._install = find_zookeeper()
        return self._install

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def argv(self) -> list[str]:
        """The command that starts this server (with the configuration ``write_config`` writes)."""
        jvm_options = [
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            "-Dzookeeper.admin.enableServer=false",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
        ]
        return self.install.command(self.config_path, jvm_options)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config_text(self) -> str:
        settings = {
            "tickTime": self.tick_ms,
            "dataDir": self.data_dir,
            "clientPort": self.port,
            "clientPortAddress": self.host,
            "minSessionTimeout": self.min_session_timeout_ms,
            "maxSessionTimeout": self.max_session_timeout_ms,
            "maxClientCnxns": 0,
            "4lw.commands.whitelist": ",".join(FOUR_LETTER_WORDS),
            "admin.enableServer": "false",
            # Transaction log files are preallocated in 64 MB steps by default: too much for many test
            # servers in a tmp directory.
            "preAllocSize": 4096,
            # Long-lived local clusters would otherwise keep every snapshot and log forever.
            "autopurge.snapRetainCount": 3,
            "autopurge.purgeInterval": 1,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        return self.config_path

    def start(self, timeout: float = 30.0) -> ZooKeeperServer:
        """Start the server (if it is not running) and wait until it serves requests."""
        if self.running:
            return self
        attempts = 3 if self._port_is_ours and not self._started_once else 1
        for attempt in range(attempts):
            self._launch()
            try:
                self._wait_serving(timeout)
            except ZooKeeperError:
                died = not self.running
                if not died:
                    signal_process(self._process.pid, signal.SIGKILL)
                self._reap(grace=10.0)
                if died and attempt + 1 < attempts and not port_is_free(self.host, self.port):
                    self.port = pick_free_port(self.host, exclude={self.port})
                    continue
                raise
            self._started_once = True
            return self
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        self.write_config()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== {stamp} starting ZooKeeper on {self.address}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=self.detach,
            )

    def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise ZooKeeperError(
                    f"ZooKeeper on {self.address} exited with code {code} at start; "
                    f"the end of {self.log_path}:\n{self.log_tail()}"
                )
            if is_serving(self.host, self.port, timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise ZooKeeperError(
                    f"ZooKeeper on {self.address} did not answer within {timeout:g} s; "
                    f"the end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds."""
        if self._process is None:
            return
        if self._process.poll() is None:
            signal_process(self._process.pid, signal.SIGTERM)
            # A paused server cannot act on SIGTERM until it runs again.
            signal_process(self._process.pid, signal.SIGCONT)
        self._reap(grace)

    def kill(self) -> None:
        """Stop the server at once, as a crash would."""
        if self._process is None:
            return
        if self._process.poll() is None:
            signal_process(self._process.pid, signal.SIGKILL)
        self._reap(grace=10.0)

    def _reap(self, grace: float) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            signal_process(process.pid, signal.SIGKILL)
            process.wait(timeout=10.0)

    def restart(self, timeout: float = 30.0, grace: float = 10.0) -> ZooKeeperServer:
        """Stop and start again on the same port with the same data."""
        self.stop(grace)
        return self.start(timeout)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers, as in a long GC pause.
        Returns once every thread of the server has stopped: the signal is delivered asynchronously, and
        on a busy machine the server answered a request sent right after it."""
        if self.running:
            signal_process(self._process.pid, signal.SIGSTOP)
            wait_until_stopped(self._process.pid)

    def resume(self) -> None:
        if self.running:
            signal_process(self._process.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<ZooKeeperServer {self.address} {state} data_dir={self.data_dir}>"
