"""Test support shipped with the store: real ZooKeeper servers and local clusters as pytest fixtures.

Enable the fixtures in a ``conftest.py`` with::

    pytest_plugins = ["kvcommon.testing.harness"]

See ``kvcommon.testing.harness`` for the fixtures it provides.
"""
