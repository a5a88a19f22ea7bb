"""kvctl: the operator command line."""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.console import Console
from rich.table import Table

from kvcommon.hashing import partition_for
from kvmeta import zk
from kvmeta.bench.command import bench
from kvmeta.compact import compact_with_progress
from kvmeta.local import cluster_from_dir, local
from kvmeta.nodeclient import NodeQueryError
from kvmeta.progress import ProgressReporter
from kvmeta.schema import READ_LEVELS, WRITE_LEVELS, ClusterConfig, ClusterPaths, OperationRecord

DEFAULT_DIR = "local-cluster"


@click.group()
def cli():
    """Operate a kvstore cluster."""


cli.add_command(local)
cli.add_command(bench)


def cluster_options(fn):
    """--zk/--cluster, or --dir of a local cluster (default: ./local-cluster if it exists)."""

    @click.option("--zk", "zk_address", help="ZooKeeper address HOST:PORT (with --cluster)")
    @click.option("--cluster", help="Cluster name (with --zk)")
    @click.option("--dir", "directory", help="Directory of a local cluster started with `kvctl local up`")
    @functools.wraps(fn)
    def wrapper(zk_address, cluster, directory, **kwargs):
        if directory or not (zk_address and cluster):
            directory = directory or DEFAULT_DIR
            if not os.path.exists(os.path.join(directory, "cluster.json")):
                raise click.UsageError(
                    f"no local cluster in {directory!r}: give --zk HOST:PORT --cluster NAME, or --dir of a "
                    "cluster started with `kvctl local up`")
            zk_address, cluster = cluster_from_dir(directory)
        try:
            client = zk.connect(zk_address, timeout=10)
        except zk.CoordinationError as err:
            raise click.ClickException(err.message) from None
        try:
            return fn(client=client, paths=ClusterPaths(cluster), **kwargs)
        except zk.CoordinationError as err:
            raise click.ClickException(err.message) from None
        finally:
            client.stop()
            client.close()

    return wrapper


@cli.group()
def cluster():
    """Create and configure clusters."""


@cluster.command("create")
@click.option("--zk", "zk_address", required=True, help="ZooKeeper address HOST:PORT")
@click.option("--cluster", "name", required=True, help="Cluster name")
@click.option("--partitions", type=int, default=64, show_default=True,
              help="Partition count, fixed for the life of the cluster")
@click.option("--replication-factor", type=int, default=3, show_default=True)
@click.option("--write-level", type=click.Choice(WRITE_LEVELS), default="quorum", show_default=True)
@click.option("--read-level", type=click.Choice(READ_LEVELS), default="strong", show_default=True)
@click.option("--retention-seconds", type=int, default=3600, show_default=True,
              help="How long old versions are kept for reads as of a version (see `kvctl config set`)")
def cluster_create(zk_address, name, partitions, replication_factor, write_level, read_level, retention_seconds):
    """Create a cluster in ZooKeeper. Start nodes and a controller next: the controller places partitions."""
    try:
        config = ClusterConfig(partitions, replication_factor, write_level, read_level, retention_seconds)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    try:
        client = zk.connect(zk_address, timeout=10)
    except zk.CoordinationError as err:
        raise click.ClickException(err.message) from None
    try:
        created = zk.create_cluster(client, ClusterPaths(name), config)
    except zk.CoordinationError as err:
        raise click.ClickException(err.message) from None
    finally:
        client.stop()
        client.close()
    click.echo(f"cluster {name!r} {'created' if created else 'already exists'}: {partitions} partitions, "
               f"replication factor {replication_factor}, write level {write_level}")


# The settings `kvctl config set` changes on a running cluster: name -> (field, parse).
SETTINGS = {
    "write-level": ("write_level", str),
    "read-level": ("read_level", str),
    "retention-seconds": ("retention_seconds", int),
}
FIXED_SETTINGS = {
    "partitions": "the partition count is fixed when the cluster is created",
    "replication-factor": "the replication factor is fixed when the cluster is created",
}


@cli.group()
def config():
    """Show or change the cluster's settings."""


@config.command("show")
@cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def config_show(client, paths, as_json):
    """The cluster's settings."""
    current = zk.read_config(client, paths)
    if as_json:
        click.echo(current.encode().decode())
        return
    for name, value in _settings(current).items():
        click.echo(f"{name:20} {value}")


@config.command("set")
@cluster_options
@click.argument("name", type=click.Choice([*SETTINGS, *FIXED_SETTINGS]))
@click.argument("value")
def config_set(client, paths, name, value):
    """Change a setting of a running cluster: write-level (the level of connections that did not choose
    one), read-level (where new connections read) or retention-seconds (how long old versions are kept).

    Nodes and proxies watch the settings and take a change up at once. A shorter retention lets the
    nodes' history compaction drop the older versions within five minutes, which frees disk and write
    work; a longer one does not bring back versions already dropped."""
    if name in FIXED_SETTINGS:
        raise click.BadParameter(FIXED_SETTINGS[name], param_hint="NAME")
    field, parse = SETTINGS[name]
    try:
        parsed = parse(value)
    except ValueError:
        raise click.BadParameter(f"{name} is a whole number of seconds, not {value!r}", param_hint="VALUE") from None
    try:
        before, after = zk.update_config(client, paths, **{field: parsed})
    except ValueError as err:  # a value ClusterConfig refuses
        raise click.BadParameter(str(err), param_hint="VALUE") from None
    old, new = _settings(before)[name], _settings(after)[name]
    click.echo(f"{name}: {old} -> {new}" if old != new else f"{name}: already {new}")


def _settings(current: ClusterConfig) -> dict[str, object]:
    return {"partitions": current.partitions, "replication-factor": current.replication_factor,
            **{name: getattr(current, field) for name, (field, _) in SETTINGS.items()}}


def gather_status(client, paths: ClusterPaths) -> dict:
    config = zk.read_config(client, paths)
    live = zk.read_live_nodes(client, paths)
    members = sorted(set(client.get_children(paths.members)) | set(live))
    partitions = zk.read_partitions(client, paths)
    positions = zk.read_positions(client, paths)
    nodes = []
    for node_id in members:
        record = live.get(node_id)
        owned = [s for s, _ in partitions.values() if node_id in s.replicas]
        nodes.append({
            "id": node_id, "live": record is not None, "address": record.address if record else None,
            "replicas": len(owned), "primaries": sum(1 for s in owned if s.primary == node_id),
        })
    rows = []
    for p in range(config.partitions):
        if p not in partitions:
            rows.append({"partition": p, "generation": 0, "primary": None, "replicas": []})
            continue
        state, _ = partitions[p]
        primary_seq = _seq(positions, state.primary, p)
        replicas = []
        for node_id in state.replicas:
            seq = _seq(positions, node_id, p)
            replicas.append({
                "node": node_id, "live": node_id in live, "in_sync": node_id in state.in_sync,
                "seq": seq, "lag": None if seq is None or primary_seq is None else max(primary_seq - seq, 0),
            })
        rows.append({"partition": p, "generation": state.generation, "primary": state.primary,
                     "replicas": replicas})
    return {"cluster": paths.cluster, "config": config.__dict__, "nodes": nodes, "partitions": rows}


def _seq(positions, node_id, partition):
    record = positions.get(node_id) if node_id else None
    if record is None or partition not in record.positions:
        return None
    return record.positions[partition][1]


@cli.command()
@cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables")
def status(client, paths, as_json):
    """Nodes, and each partition's primary, replicas, generation, positions and lag."""
    report = gather_status(client, paths)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console = Console()
    config = report["config"]
    console.print(f"cluster [bold]{report['cluster']}[/]: {config['partitions']} partitions, replication factor "
                  f"{config['replication_factor']}, write level {config['write_level']}, read level "
                  f"{config['read_level']}")
    nodes = Table("node", "state", "address", "replicas", "primaries", title="Nodes")
    for n in report["nodes"]:
        nodes.add_row(n["id"], "[green]live[/]" if n["live"] else "[red]down[/]", n["address"] or "-",
                      str(n["replicas"]), str(n["primaries"]))
    console.print(nodes)
    table = Table("partition", "generation", "primary", "replicas (seq, lag)", title="Partitions")
    for row in report["partitions"]:
        replicas = ", ".join(_replica_cell(r, row["primary"]) for r in row["replicas"]) or "[red]unassigned[/]"
        table.add_row(str(row["partition"]), str(row["generation"]), row["primary"] or "[red]none[/]", replicas)
    console.print(table)


def _replica_cell(replica: dict, primary: str | None) -> str:
    seq = "?" if replica["seq"] is None else str(replica["seq"])
    lag = "" if not replica["lag"] else f", lag {replica['lag']}"
    mark = "*" if replica["node"] == primary else ""
    colour = "green" if replica["live"] and replica["in_sync"] else ("yellow" if replica["live"] else "red")
    return f"[{colour}]{mark}{replica['node']}[/] ({seq}{lag})"


@cli.command()
@click.argument("key")
@cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def locate(client, paths, key, as_json):
    """Which partition holds KEY, and on which nodes."""
    config = zk.read_config(client, paths)
    partition = partition_for(key.encode(), config.partitions)
    partitions = zk.read_partitions(client, paths)
    live = zk.read_live_nodes(client, paths)
    state = partitions[partition][0] if partition in partitions else None
    report = {
        "key": key, "partition": partition,
        "generation": state.generation if state else 0,
        "primary": state.primary if state else None,
        "replicas": [{"node": n, "live": n in live, "address": live[n].address if n in live else None}
                     for n in (state.replicas if state else ())],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"key {key!r} -> partition {partition}, generation {report['generation']}")
    for r in report["replicas"]:
        role = "primary  " if r["node"] == report["primary"] else "secondary"
        click.echo(f"  {role} {r['node']:<10} {r['address'] or 'down'}")


@cli.command()
@click.argument("partition", type=int)
@cluster_options
@click.option("--to", "target", help="Node to make primary (default: the most up-to-date in-sync secondary)")
@click.option("--unclean", is_flag=True,
              help="Promote the most up-to-date reachable replica even if too few replicas answer to be sure no "
                   "acknowledged write is lost. Use only when the missing replicas are gone for good.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
def failover(client, paths, partition, target, unclean, timeout):
    """Switch PARTITION's primary: a planned, lossless switch (writes pause until the target has caught up),
    or with --unclean a forced failover when automatic failover cannot proceed."""
    import time

    from kazoo.exceptions import NodeExistsError

    partitions = zk.read_partitions(client, paths)
    if partition not in partitions:
        raise click.BadParameter(f"partition {partition} does not exist (the cluster has {len(partitions)})")
    before = partitions[partition][0]
    op = OperationRecord("unclean" if unclean else "switch", partition, target)
    try:
        client.create(paths.operation(op.name), op.encode(), makepath=True)
    except NodeExistsError:
        raise click.ClickException(f"an operation on partition {partition} is already under way; see `kvctl "
                                   "status`, or wait for it") from None
    click.echo(f"partition {partition}: {op.kind} requested (primary {before.primary}, generation "
               f"{before.generation}); the controller carries it out")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        data = client.exists(paths.operation(op.name)) and client.get(paths.operation(op.name))[0]
        if not data:
            state = zk.read_partitions(client, paths)[partition][0]
            click.echo(f"partition {partition}: primary {state.primary}, generation {state.generation}")
            return
        current = OperationRecord.decode(data)
        progress = f"{current.step}: {current.message}" if current.message else current.step
        if progress != last:
            click.echo(f"  {progress}")
            last = progress
        time.sleep(0.2)
    raise click.ClickException(f"the {op.kind} of partition {partition} did not finish within {timeout:.0f}s "
                               f"({last}); it stays requested: the controller keeps trying")


@cli.command()
@cluster_options
@click.option("--node", "only", multiple=True, help="Compact this node only (repeatable; default: every live node)")
def compact(client, paths, only):
    """Compact the store of each live node, one node after the other, while they keep serving.

    Run it after a bulk load: until then, LevelDB reorganizes the freshly loaded levels a file at a time
    while reads go on, which costs each read about as much CPU again."""
    live = zk.read_live_nodes(client, paths)
    unknown = sorted(set(only) - set(live))
    if unknown:
        raise click.BadParameter(f"not a live node: {', '.join(unknown)} (live: {', '.join(sorted(live)) or 'none'})",
                                 param_hint="--node")
    progress = ProgressReporter(Console())
    for node_id in sorted(only or live):
        record = live[node_id]
        try:
            seconds = compact_with_progress(progress, node_id, record.host, record.port)
        except NodeQueryError as err:
            raise click.ClickException(f"{node_id}: {err.message}") from None
        progress.say(f"{node_id}: store compacted in {seconds:.1f} s")


def main():
    cli(prog_name="kvctl")


if __name__ == "__main__":
    sys.exit(main())
