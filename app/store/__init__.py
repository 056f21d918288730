"""Session storage: the `SessionStore` contract and its errors (base.py), Redis (redis.py: standalone, Sentinel,
Cluster; keys.py; url.py; embedded.py), stored formats (schema.py), in memory (memory.py)."""
