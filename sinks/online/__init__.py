"""The online store in Redis: every key, the versions, writes, reads and restores."""
