"""What more than one of runlog's processes use: the state directory, the
request spool, the journal, recording refusals, the inotify watcher."""
