"""kvproxy: the client-facing proxy process."""

from __future__ import annotations

import logging
import signal
import sys

import click

from kvcommon.errors import KVError
from kvcommon.logs import setup_logging
from kvcommon.server_options import server_options

log = logging.getLogger("kvproxy")


@click.command()
@server_options
@click.option("--id", "proxy_id", required=True, help="This proxy's id")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", type=int, default=6380, show_default=True, help="Port clients connect to")
@click.option("--max-bulk-mb", type=int, default=64, show_default=True,
              help="Largest argument (value) a client may send, in MiB")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, envvar="KVPROXY_WORKERS",
              help="Proxy processes sharing the port (SO_REUSEPORT); one per core the proxy may use")
def main(zk_address, cluster, proxy_id, host, port, max_bulk_mb, workers, log_level):
    """Run a proxy: Redis clients connect here."""
    from kvproxy import workers as shared_port

    number, children = 1, []
    if workers > 1:
        if not shared_port.port_is_free(host, port):
            sys.exit(f"kvproxy: cannot listen on {host}:{port}: address already in use; pick another --port")
        # Fork before the reactor, threads or sockets exist: each worker is a whole proxy.
        number, children = shared_port.fork_workers(workers)
        if number > 1:
            proxy_id = f"{proxy_id}.{number}"
    setup_logging(f"kvproxy[{proxy_id}]", log_level)
    from kvcommon import gctune
    from kvcommon import reactor as server_reactor

    server_reactor.install()
    from twisted.internet import reactor, task
    from twisted.internet.error import CannotListenError

    from kvmeta import zk
    from kvproxy.commands import Commands
    from kvproxy.metadata import MapWatcher, proxy_record
    from kvproxy.pool import NodePool
    from kvproxy.protocol import ClientFactory
    from kvproxy.service import ProxyService

    pool = NodePool(reactor)
    service = ProxyService(reactor, pool)
    task.LoopingCall(pool.check_stuck).start(1.0, now=False)
    commands = Commands(service, proxy_id, port)
    factory = ClientFactory(commands, max_bulk_mb * 1024 * 1024)
    try:
        if workers > 1:
            sock = shared_port.shared_listening_socket(host, port, backlog=1024)
            reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
            sock.close()  # the reactor listens on a duplicate
        else:
            reactor.listenTCP(port, factory, interface=host, backlog=1024)
    except (CannotListenError, shared_port.ListenError) as err:
        shared_port.stop_workers(children)
        why = err.socketError if isinstance(err, CannotListenError) else err
        sys.exit(f"kvproxy: cannot listen on {host}:{port}: {why}; pick another --port")
    try:
        client = zk.connect(zk_address)
        watcher = MapWatcher(reactor, client, cluster, service, proxy_record(proxy_id, host, port))
        watcher.start()
    except KVError as err:
        sys.exit(f"kvproxy: {err.message}")

    def shutdown():
        shared_port.stop_workers(children)
        watcher.stop()
        client.stop()
        client.close()
        log.info("stopped")

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    log.info("proxy %s listening on %s:%d for cluster %s%s", proxy_id, host, port, cluster,
             f" (worker {number} of {workers})" if workers > 1 else "")
    gctune.tune_for_server()
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
