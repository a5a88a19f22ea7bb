"""The proxy: speaks the Redis protocol to clients and routes each command to the partition's primary."""
