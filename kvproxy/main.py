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
def main(zk_address, cluster, proxy_id, host, port, max_bulk_mb, log_level):
    """Run a proxy: Redis clients connect here."""
    setup_logging(f"kvproxy[{proxy_id}]", log_level)
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
    try:
        reactor.listenTCP(port, ClientFactory(commands, max_bulk_mb * 1024 * 1024), interface=host, backlog=1024)
    except CannotListenError as err:
        sys.exit(f"kvproxy: cannot listen on {host}:{port}: {err.socketError}; pick another --port")
    try:
        client = zk.connect(zk_address)
        watcher = MapWatcher(reactor, client, cluster, service, proxy_record(proxy_id, host, port))
        watcher.start()
    except KVError as err:
        sys.exit(f"kvproxy: {err.message}")

    def shutdown():
        watcher.stop()
        client.stop()
        client.close()
        log.info("stopped")

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    log.info("proxy %s listening on %s:%d for cluster %s", proxy_id, host, port, cluster)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
