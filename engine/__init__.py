"""runlog: an OCI container runtime with a declarative lifecycle and a replayable event log."""
