"""Several proxy processes on one port, for machines with cores to spare.

A proxy is one Twisted reactor on one core. With ``--workers N`` the proxy forks N-1 copies of itself
before it starts anything; each opens its own listening socket with ``SO_REUSEPORT`` on the same port,
and the kernel spreads new connections across them. Each worker is a whole proxy (its own ZooKeeper
session and node connections), since proxies keep no state that clients share.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket

_PR_SET_PDEATHSIG = 1


class ListenError(Exception):
    pass


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port. Checked without SO_REUSEPORT, so that workers never join a
    port some other process (another proxy with workers, say) already shares."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def fork_workers(count: int) -> tuple[int, list[int]]:
    """Fork count-1 workers. Returns (this process's worker number from 1, the child pids if the first)."""
    children = []
    for number in range(2, count + 1):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            return number, []
        children.append(pid)
    return 1, children


def stop_workers(children: list[int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            continue


def shared_listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on host:port that other workers may bind too (SO_REUSEPORT)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        raise ListenError(err.strerror) from None
    sock.setblocking(False)
    return sock


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _die_with_parent() -> None:
    # A worker left behind by a parent killed with SIGKILL would hold the port; Linux ends it instead.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
