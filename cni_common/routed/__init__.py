"""A container routed to the node over its own veth pair, no bridge: the engine of the ptp plugin.

The host end of each pair holds the gateway address (/32, /128; the same one on every pair), the node routes each
container address to its host end, and the container reaches its own subnet through the gateway, so every
packet passes the node's routing table and netfilter. A plugin parses its config into a
:class:`~cni_common.routed.conf.RoutedConf`, then calls the verb it was asked for. Read in this order:

- :mod:`.conf`: the record of what to build;
- :mod:`.add`: ADD as one undo stack: IPAM, forwarding, the veth pair, the container's layer 3 and routes via
  the gateway, the host end's gateway address and host routes, masquerade;
- DEL is every veth attachment's (:func:`cni_common.veth.release`);
- :mod:`.check`: CHECK against the previous result.

Nothing is imported here: a plugin imports only the verb it runs.
"""
