"""kvnode: a storage node process."""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from kvcommon.errors import KVError
from kvcommon.logs import setup_logging
from kvcommon.server_options import server_options

log = logging.getLogger("kvnode")


@click.command()
@server_options
@click.option("--id", "node_id", required=True, help="This node's id, stable across restarts")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on and advertise")
@click.option("--port", type=int, required=True, help="RESP port (proxies, replication, operators)")
@click.option("--data-dir", type=click.Path(file_okay=False), required=True, help="LevelDB directory")
@click.option("--cache-mb", type=int, default=64, show_default=True, help="LevelDB block cache")
@click.option("--max-open-files", type=click.IntRange(min=64), default=5000, show_default=True,
              help="LevelDB table files kept open, each with its index and bloom filter in memory (about 40 KB "
                   "per 2 MB table); fewer than the store holds makes reads reopen files. Capped by the "
                   "process's file limit")
@click.option("--sync/--no-sync", default=False, show_default=True,
              help="fsync every group commit (survives a machine crash, not only a process crash)")
@click.option("--session-timeout", type=float, default=1.5, show_default=True, envvar="KVNODE_SESSION_TIMEOUT",
              help="ZooKeeper session timeout in seconds: how fast a dead node is noticed (and how long a "
                   "stall may last before a live node is taken for dead)")
def main(zk_address, cluster, node_id, host, port, data_dir, cache_mb, max_open_files, sync, session_timeout,
         log_level):
    """Run a storage node."""
    setup_logging(f"kvnode[{node_id}]", log_level)
    from kvcommon import gctune, heap
    from kvcommon import reactor as server_reactor

    server_reactor.install()
    from twisted.internet import reactor, task
    from twisted.internet.error import CannotListenError

    from kvmeta import zk
    from kvmeta.schema import NodeRecord
    from kvnode.commit import StorageWriter
    from kvnode.coordination import NodeCoordinator
    from kvnode.protocol import NodeFactory
    from kvnode.replication.follower import PING_INTERVAL
    from kvnode.service import NodeService
    from kvnode.storage.keys import check_schema
    from kvnode.storage.leveldb import LevelDBEngine, table_files_allowed

    try:
        engine = LevelDBEngine(data_dir, cache_bytes=cache_mb * 1024 * 1024,
                               max_open_files=table_files_allowed(max_open_files))
        check_schema(engine, data_dir)
    except KVError as err:
        sys.exit(f"kvnode: {err.message}")
    service = NodeService(reactor, engine, node_id, sync=sync, writer=StorageWriter(reactor, engine))
    try:
        reactor.listenTCP(port, NodeFactory(service), interface=host, backlog=1024)
    except CannotListenError as err:
        sys.exit(f"kvnode: cannot listen on {host}:{port}: {err.socketError}; pick another --port")
    try:
        client = zk.connect(zk_address, session_timeout=session_timeout)
    except KVError as err:
        sys.exit(f"kvnode: {err.message}")
    record = NodeRecord(node_id, host, port, pid=os.getpid())
    coordinator = NodeCoordinator(reactor, client, cluster, service, record)
    try:
        coordinator.start()
    except KVError as err:
        client.stop()
        sys.exit(f"kvnode: {err.message}")

    def shutdown():
        coordinator.stop()
        service.commit.close()
        service.stop_store_compaction()
        client.stop()
        client.close()
        engine.close()
        log.info("stopped")

    task.LoopingCall(service.trim_logs).start(5.0, now=False)
    task.LoopingCall(heap.release_free_memory).start(heap.TRIM_INTERVAL, now=False)
    task.LoopingCall(service.expire_overdue).start(0.25, now=False)
    service.expiry_task.start()
    service.compaction_task.start()
    task.LoopingCall(service.follower.ping).start(PING_INTERVAL, now=False)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    log.info("node %s listening on %s:%d, data in %s", node_id, host, port, data_dir)
    gctune.tune_for_server()
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
