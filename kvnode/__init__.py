"""A storage node: partition replicas in one LevelDB, served over RESP."""
