"""Replication: the primary streams its log to the secondaries, which apply it in order."""
