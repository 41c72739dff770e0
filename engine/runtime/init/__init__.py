"""The container's init before its exec: the stages forked by the monitor, the
root filesystem, its mounts and cgroup view, the console. Nothing here
imports after pivot_root."""
