"""The `runlog` command's own process: what the CLI runs (create's launch and its
forked monitor-to-be, the control client, attach, recording refusals made
before any monitor exists, clean-up and reconcile when the monitor is gone)
and the exec process it makes."""
