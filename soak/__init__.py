"""The soak run (``make soak``, not in CI): random edits on both sides of 20 mailboxes for
half an hour while the worker is killed -9, a broker node of the three-node cluster is stopped
and started, and each side goes through 500, 503, 429, timeout and reset outages; then every
change must be applied exactly once, nothing retryable parked, RSS flat and the log small."""
