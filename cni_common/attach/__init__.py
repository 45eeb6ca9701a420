"""A container attached to a Linux bridge on the host by a veth pair: the engine of the bridge plugin, and of
every plugin whose containers sit on a local bridge (vxlan).

A plugin parses its own config into a :class:`~cni_common.attach.conf.BridgeConf` (what to build), then calls
the verb it was asked for. Read in this order:

- :mod:`.conf`: the record of what to build (bridge, gateway, masquerade, MTU, VLANs, port flags, IPAM type),
  and the container MAC a request asks for;
- :mod:`.add`: ADD as one undo stack: bridge, veth pair, bridge port, IPAM, the container's layer 3, gateway
  addresses, masquerade (the in-progress :class:`~cni_common.attach.add.Attachment` carries the state);
- :mod:`.bridge_port`: the host side: the bridge itself, a link made its port (hairpin, isolation, VLANs),
  gateway addresses and the bridge's MAC;
- :mod:`cni_common.ifconfig` (not in this package: nothing in it is about bridges): addresses, routes and the
  waits for DAD and carrier inside the container;
- :mod:`.delete`: DEL, best effort and idempotent;
- :mod:`.check`: CHECK against the previous result.

Nothing is imported here: a plugin imports only the verb it runs.
"""
