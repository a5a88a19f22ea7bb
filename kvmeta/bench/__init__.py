"""`kvctl bench`: this store and a Redis primary with two replicas, side by side under the same loads."""
