"""Linux network namespaces for tests that cut a process off the network.

A ``TestNetwork`` is a private layer-2 segment: a bridge in the root namespace holding the first address of a
/24 subnet that nothing else on the machine uses, and any number of namespaces, each joined to the bridge by
a veth pair and holding one further address of the subnet (with its own ``lo``). Processes started with
``Namespace.command(argv)`` (``ip netns exec``) listen on their namespace's address; processes of the root
namespace reach them through the bridge, and they reach the bridge address and each other, without IP
forwarding or any change to the machine's other interfaces.

``cut(namespace)`` takes the root side of the namespace's veth down: every packet between it and the rest
is dropped, both ways, and established connections simply stop hearing from each other, as in a real
network partition. ``heal(namespace)`` brings it back.

``close()`` removes every namespace, veth and bridge created, also after a failure half-way; it is safe to
call twice. Everything needs root (CAP_NET_ADMIN): ``require_network_namespaces()`` tells a test to skip
with the reason when namespaces cannot be created here.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

IP = "ip"
# Private /24 subnets tried for a test network: 10.<second>.<third>.0/24, picked at random, skipping any
# that overlaps an address or route already on the machine.
SUBNET_SECOND_OCTETS = range(200, 250)
SUBNET_ATTEMPTS = 20
COMMAND_TIMEOUT = 15.0


class NetworkSetupError(RuntimeError):
    """A namespace, link or address could not be created; the message has the failed command's output."""


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise NetworkSetupError(f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def network_namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can (a probe namespace is created and
    removed)."""
    if shutil.which(IP) is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"kvprobe-{uuid.uuid4().hex[:8]}"
    try:
        result = run_ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` cannot run: {exc}"
    if result.returncode != 0:
        return f"`ip netns add` is not permitted here (needs root / CAP_SYS_ADMIN): {result.stderr.strip()}"
    # Entering a namespace remounts /sys, which fails where / is no mount point (a chroot, for one).
    inside = run_ip("-n", probe, "link", "set", "lo", "up", check=False)
    run_ip("netns", "del", probe, check=False)
    if inside.returncode != 0:
        return f"commands cannot run inside a network namespace here: {inside.stderr.strip()}"
    return None


def require_network_namespaces() -> None:
    """Skip the calling test, saying why, when network namespaces cannot be created."""
    import pytest

    reason = network_namespaces_unavailable()
    if reason:
        pytest.skip(reason)


@dataclass(frozen=True)
class Namespace:
    name: str
    address: str
    # The root-namespace end of its veth pair (on the bridge), and the end inside the namespace.
    host_link: str
    link: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return [IP, "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT, **options) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), timeout=timeout, **options)


class TestNetwork:
    """A bridge with namespaces on a private /24; see the module documentation."""

    __test__ = False  # not a pytest test class

    def __init__(self, tag: str | None = None):
        self.tag = tag or uuid.uuid4().hex[:6]
        self.bridge = f"kvbr{self.tag}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.namespaces: list[Namespace] = []
        self._links: list[str] = []
        self._bridge_created = False
        self._closed = False

    @property
    def host_address(self) -> str:
        """The root namespace's address on the test network: where services of the root namespace listen."""
        return str(self._subnet()[1])

    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise NetworkSetupError("the test network is not set up yet: call setup() first")
        return self.subnet

    def setup(self) -> TestNetwork:
        try:
            self.subnet = self._free_subnet()
            run_ip("link", "add", self.bridge, "type", "bridge")
            self._bridge_created = True
            run_ip("addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", self.bridge)
            run_ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def add_namespace(self) -> Namespace:
        """A new namespace with a veth pair to the bridge, ``lo`` up and the next address of the subnet."""
        index = len(self.namespaces) + 1
        subnet = self._subnet()
        namespace = Namespace(
            name=f"kvns-{self.tag}-{index}",
            address=str(subnet[1 + index]),
            host_link=f"kvh{self.tag}{index}",
            link=f"kvn{self.tag}{index}",
        )
        try:
            run_ip("netns", "add", namespace.name)
            self.namespaces.append(namespace)
            run_ip("link", "add", namespace.host_link, "type", "veth", "peer", "name", namespace.link,
                   "netns", namespace.name)
            self._links.append(namespace.host_link)
            run_ip("link", "set", namespace.host_link, "master", self.bridge)
            run_ip("link", "set", namespace.host_link, "up")
            inside = ("-n", namespace.name)
            run_ip(*inside, "addr", "add", f"{namespace.address}/{subnet.prefixlen}", "dev", namespace.link)
            run_ip(*inside, "link", "set", namespace.link, "up")
            run_ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return namespace

    def cut(self, namespace: Namespace) -> None:
        """Drop every packet between ``namespace`` and the rest of the network, both ways."""
        run_ip("link", "set", namespace.host_link, "down")

    def heal(self, namespace: Namespace) -> None:
        run_ip("link", "set", namespace.host_link, "up")

    def close(self) -> None:
        """Remove everything created; errors about what is already gone are ignored."""
        if self._closed:
            return
        self._closed = True
        for namespace in reversed(self.namespaces):
            run_ip("netns", "del", namespace.name, check=False)
        # Deleting a namespace deletes the veth end inside it and so its peer; delete any left anyway.
        for link in self._links:
            if run_ip("link", "show", link, check=False).returncode == 0:
                run_ip("link", "del", link, check=False)
        if self._bridge_created:
            run_ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> TestNetwork:
        return self.setup()

    def __exit__(self, *exc_info) -> None:
        self.close()

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = _networks_in_use()
        rng = random.Random()
        for _ in range(SUBNET_ATTEMPTS):
            candidate = ipaddress.IPv4Network(f"10.{rng.choice(SUBNET_SECOND_OCTETS)}.{rng.randrange(256)}.0/24")
            if not any(candidate.overlaps(network) for network in used):
                return candidate
        raise NetworkSetupError(f"found no free private /24 for a test network in {SUBNET_ATTEMPTS} attempts")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address or a route in (the default route excluded)."""
    networks = []
    for line in run_ip("-o", "-4", "addr", "show").stdout.splitlines():
        words = line.split()
        if "inet" in words:
            networks.append(ipaddress.IPv4Network(words[words.index("inet") + 1], strict=False))
    for line in run_ip("-4", "route", "show").stdout.splitlines():
        destination = line.split()[0] if line.strip() else "default"
        if destination != "default":
            networks.append(ipaddress.IPv4Network(destination, strict=False))
    return networks
