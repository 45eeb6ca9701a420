"""Links made for a container from a parent or from nothing: macvlan, ipvlan, vlan, dummy and tap.

- :mod:`.place`: the one place that creates a link of a kind for the container (in the right namespace, under
  a temporary name), renames it to ``CNI_IFNAME``, moves it, and rolls all of it back when the ADD fails.
- :mod:`.master`: which host link a child hangs off (``master``, the default route's link, a chained
  prevResult's interface).
- :mod:`.attach`: ADD, DEL, CHECK, STATUS and GC of such a link with its addresses, shared by the five plugins,
  which only say how their link is made and what CHECK compares (a :class:`~.attach.LinkPlan`).
"""
