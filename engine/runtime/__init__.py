"""The real runtime: state directories, the container's init, its monitor, real drivers."""
