"""One error tree for the whole store, and the mapping to Redis-style error replies.

Every error a client can see is a ``KVError`` whose ``code`` is the first word of the Redis error reply
(``ERR``, ``WRONGTYPE``, ``TRYAGAIN`` ...) and whose message says what happened and what to do.
"""


class KVError(Exception):
    code = "ERR"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def reply_text(self) -> str:
        """The error as it goes on the wire, without the leading '-'."""
        return f"{self.code} {self.message}"


class ProtocolError(KVError):
    """The client sent bytes that are not RESP. Redis answers and then closes the connection."""

    def __init__(self, message: str):
        super().__init__(f"Protocol error: {message}")


class CommandError(KVError):
    """A well-formed command that cannot run as given (unknown command, wrong arity, bad argument)."""


class WrongTypeError(KVError):
    code = "WRONGTYPE"

    def __init__(self, message: str = "Operation against a key holding the wrong kind of value"):
        super().__init__(message)


class TryAgainError(KVError):
    """A transient condition (no primary right now, map changing); the same request may succeed later."""

    code = "TRYAGAIN"


class OutcomeUnknownError(KVError):
    """A write was sent and may or may not have been applied: it must not be retried blindly.

    Its own code, unlike TRYAGAIN, which promises that nothing was done: proxies (and Redis Cluster
    clients) retry TRYAGAIN, and retrying a write that did take effect could overwrite newer writes.
    """

    code = "UNCERTAIN"


class NotPrimaryError(KVError):
    """A node was asked to act as a partition's primary but is not, or the caller routed by an old map.

    ``generation`` is the newest generation the node knows for the partition, so a proxy can tell whether
    its own map is behind.
    """

    code = "NOTPRIMARY"

    def __init__(self, partition: int, generation: int, primary: str | None):
        self.partition = partition
        self.generation = generation
        self.primary = primary
        super().__init__(
            f"partition {partition} is at generation {generation} with primary {primary or 'none'}; "
            "refresh the partition map and retry"
        )


class ReadOnlyError(KVError):
    code = "READONLY"


class ClusterDownError(KVError):
    code = "CLUSTERDOWN"


def error_from_reply(text: str) -> KVError:
    """Rebuild a KVError from an error reply text received from a node (``CODE message``)."""
    code, _, message = text.partition(" ")
    if code == NotPrimaryError.code:
        # "partition P is at generation G with primary N; ..."
        words = message.split()
        try:
            partition, generation = int(words[1]), int(words[5])
            primary = words[8].rstrip(";")
            return NotPrimaryError(partition, generation, None if primary == "none" else primary)
        except (IndexError, ValueError):
            pass
    for cls in (TryAgainError, WrongTypeError, ReadOnlyError, ClusterDownError, OutcomeUnknownError):
        if code == cls.code:
            return cls(message)
    err = KVError(message)
    err.code = code
    return err
