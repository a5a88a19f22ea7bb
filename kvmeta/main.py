"""kvmeta: the controller process."""

from __future__ import annotations

import logging
import signal
import sys

import click

from kvcommon.logs import setup_logging
from kvcommon.server_options import server_options
from kvmeta import zk
from kvmeta.controller import Controller


@click.command()
@server_options
@click.option("--id", "controller_id", required=True, help="This controller's id")
def main(zk_address: str, cluster: str, controller_id: str, log_level: str) -> None:
    """Run a controller. Several may run; one is elected leader."""
    setup_logging(f"kvmeta[{controller_id}]", log_level)
    try:
        client = zk.connect(zk_address)
    except zk.CoordinationError as err:
        sys.exit(f"kvmeta: {err.message}")
    controller = Controller(client, cluster, controller_id)

    def on_signal(signum, frame):
        controller.stop()
        client.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        controller.run()
    except zk.CoordinationError as err:
        sys.exit(f"kvmeta: {err.message}")
    except Exception:
        if not controller.stopped:
            raise
    finally:
        client.stop()
        client.close()
        logging.getLogger(__name__).info("stopped")


if __name__ == "__main__":
    main()
