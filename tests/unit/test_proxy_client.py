"""The proxy's client connection: single-key commands on the hot path, and everything else as execute() says."""

from twisted.internet import task
from twisted.internet.testing import StringTransport

from kvcommon.resp import encode_command
from kvmeta.schema import NodeRecord, PartitionState
from kvproxy import commands as commands_module
from kvproxy.commands import Commands
from kvproxy.pool import NodeConnection, NodePool
from kvproxy.protocol import ClientProtocol
from kvproxy.routing import ClusterView
from kvproxy.service import ProxyService


class Transport(StringTransport):
    def setTcpNoDelay(self, enabled):
        pass


def proxy(partitions=4):
    """A proxy whose nodes are open connections over StringTransports: node "a" leads every partition, "b"
    follows."""
    view = ClusterView(partitions, {p: PartitionState(p, 7, "a", ("a", "b"), ("a", "b")) for p in range(partitions)},
                       {"a": NodeRecord("a", "ha", 1), "b": NodeRecord("b", "hb", 2)})
    pool = NodePool(task.Clock())
    nodes = {}
    for name, host, port in (("a", "ha", 1), ("b", "hb", 2)):
        conn = nodes[name] = NodeConnection(name)
        conn.makeConnection(Transport())
        pool._connections[(name, host, port)] = conn
    commands = Commands(ProxyService(task.Clock(), pool, view), "p1", 6380)
    return commands, nodes


def client(commands):
    protocol = ClientProtocol(commands, max_bulk_len=1 << 20)
    protocol.makeConnection(Transport())
    return protocol


def sent(node) -> bytes:
    out = node.transport.value()
    node.transport.clear()
    return out


def px(commands, args, options=b"-"):
    partition = commands.service.view.partition_of(args[1])
    return encode_command([b"PX", partition, 7, options, *args])


def test_single_key_commands_go_to_their_partition_and_replies_keep_request_order():
    commands, nodes = proxy()
    c = client(commands)
    for key in (b"k1", b"k2"):  # the first GET takes execute(), the second the hot path
        c.dataReceived(encode_command([b"GET", key]))
    c.dataReceived(encode_command([b"set", b"k3", b"v", b"EX", b"10"]))
    assert sent(nodes["a"]) == b"".join([px(commands, [b"GET", b"k1"]), px(commands, [b"GET", b"k2"]),
                                         px(commands, [b"set", b"k3", b"v", b"EX", b"10"])])
    assert b"GET" in commands.single_key and b"set" in commands.single_key
    nodes["a"].dataReceived(b"$2\r\nv1\r\n$-1\r\n+OK\r\n")
    assert c.transport.value() == b"$2\r\nv1\r\n$-1\r\n+OK\r\n"
    assert commands.service.commands_processed == 3


def test_a_known_command_with_the_wrong_arity_is_refused_and_sent_nowhere():
    commands, nodes = proxy()
    c = client(commands)
    c.dataReceived(encode_command([b"GET", b"k"]))
    sent(nodes["a"])
    c.dataReceived(encode_command([b"GET", b"k", b"extra"]) + encode_command([b"SET", b"k"]))
    assert sent(nodes["a"]) == b""
    nodes["a"].dataReceived(b"$-1\r\n")
    assert c.transport.value() == (b"$-1\r\n-ERR wrong number of arguments for 'get' command\r\n"
                                   b"-ERR wrong number of arguments for 'set' command\r\n")


def test_a_reply_waits_for_the_one_before_it_from_another_node():
    commands, nodes = proxy()
    c = client(commands)
    c.dataReceived(encode_command([b"GET", b"k"]))
    c.dataReceived(encode_command([b"KV.READLEVEL", b"eventual"]))
    # Eventual reads go to any replica; with "a" unreachable for them, the read goes to "b".
    commands.service.view.nodes.pop("a")
    c.dataReceived(encode_command([b"GET", b"k"]))
    assert sent(nodes["b"]) == px(commands, [b"GET", b"k"], b"r=eventual")
    nodes["b"].dataReceived(b"$1\r\nb\r\n")
    assert c.transport.value() == b""  # the first GET's reply has not come yet
    nodes["a"].dataReceived(b"$1\r\na\r\n")
    assert c.transport.value() == b"$1\r\na\r\n+OK\r\n$1\r\nb\r\n"


def test_spellings_kept_for_the_hot_path_are_bounded(monkeypatch):
    monkeypatch.setattr(commands_module, "MAX_SPELLINGS", 4)
    commands, nodes = proxy()
    c = client(commands)
    for name in (b"get", b"GET", b"Get", b"gEt", b"geT", b"GEt"):
        c.dataReceived(encode_command([name, b"k"]))
    assert len(commands.single_key) == 4
    assert sent(nodes["a"]).count(b"\r\nk\r\n") == 6


def test_a_write_refused_after_its_client_disconnected_is_not_sent_again():
    commands, nodes = proxy()
    c = client(commands)
    c.dataReceived(encode_command([b"SET", b"k", b"old"]))
    sent(nodes["a"])
    c.connectionLost(None)
    nodes["a"].dataReceived(b"-NOTPRIMARY partition 0 has another primary\r\n")
    commands.service.reactor.advance(1)
    assert sent(nodes["a"]) == b"" and sent(nodes["b"]) == b""
    assert commands.service.retries == 0


def test_pipelined_writes_keep_their_order_when_the_primary_changes_between_them():
    commands, nodes = proxy()
    c = client(commands)
    c.dataReceived(encode_command([b"SET", b"k", b"a"]))
    # The map moves partition of k to "b" before the next write of the pipeline is read.
    view = commands.service.view
    partition = view.partition_of(b"k")
    view.states[partition] = PartitionState(partition, 8, "b", ("a", "b"), ("a", "b"))
    c.dataReceived(encode_command([b"SET", b"k", b"b"]))
    assert sent(nodes["b"]) == encode_command([b"PX", partition, 8, b"-", b"SET", b"k", b"b"])
    nodes["b"].dataReceived(b"+OK\r\n")
    # The old primary refuses the first: sent to "b" now, it would land after the second and undo it.
    nodes["a"].dataReceived(b"-NOTPRIMARY partition has another primary\r\n")
    commands.service.reactor.advance(1)
    assert sent(nodes["b"]) == b""
    assert c.transport.value().startswith(b"-TRYAGAIN ") and c.transport.value().endswith(b"+OK\r\n")
