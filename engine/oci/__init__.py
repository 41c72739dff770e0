"""The OCI runtime-spec layer: a bundle's ``config.json``, mount options,
signal names, the ``runc spec``/``runc features`` documents and the state
object.

Pure data and parsing: nothing here touches the host beyond reading the
bundle's configuration. The package ``__init__`` imports nothing, so that
``runlog kill`` can import :mod:`engine.oci.signals` without paying for the
configuration parser.
"""
