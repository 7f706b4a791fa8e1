"""The command line: the daemon, ``replay``, ``publish``, and the formats they read."""
