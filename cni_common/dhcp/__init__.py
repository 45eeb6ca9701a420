"""The dhcp IPAM plugin's daemon and the protocol between plugin and daemon.

A DHCP lease must be renewed for as long as the container lives, which a plugin process (one call, then gone)
cannot do; so, as upstream, a long-running daemon (``dhcp daemon``, a mode of the same single file) holds the
leases and the plugin asks it over a unix socket. Modules:

- :mod:`.wire`: the plugin-daemon protocol (one JSON line each way), with a bounded client;
- :mod:`.options`: the ``provide`` and ``request`` ipam keys, read into the client's settings;
- :mod:`.store`: lease records on disk, so a restarted daemon keeps (re-acquires) the containers' addresses;
- :mod:`.lease`: one lease, kept by pyroute2's DHCP client in a thread inside the container's namespace;
- :mod:`.daemon`: flags, socket, the lease table and its requests.

The plugin imports only :mod:`.wire`; pyroute2's DHCP client is loaded by the daemon alone.
"""
