"""Command-line options every server process (kvnode, kvproxy, kvmeta) takes."""

import click


def server_options(command):
    """--zk, --cluster and --log-level."""
    command = click.option("--log-level", default="INFO", show_default=True,
                           help="DEBUG, INFO, WARNING or ERROR")(command)
    command = click.option("--cluster", required=True, help="Cluster name")(command)
    return click.option("--zk", "zk_address", required=True,
                        help="ZooKeeper address, HOST:PORT[,HOST:PORT...]")(command)
