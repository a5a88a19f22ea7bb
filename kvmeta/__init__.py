"""Cluster metadata: the ZooKeeper schema, the controller, and the operator CLI (kvctl)."""
