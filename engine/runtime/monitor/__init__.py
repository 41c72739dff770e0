"""The per-container monitor: its loop and control requests, the container and
its drivers, hooks, the streams it keeps, and forking the container's init."""
