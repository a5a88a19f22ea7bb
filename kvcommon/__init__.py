"""Pieces shared by the node, the proxy and the controller: the RESP codec, errors, hashing, clocks."""
