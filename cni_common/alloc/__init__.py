"""host-local's allocator, split by job: range config (:mod:`.config`), the store protocol (:mod:`.store`),
the round-robin allocator (:mod:`.allocator`) and the upstream-compatible disk store (:mod:`.disk`); the unit
tests use an in-memory store (``tests/helpers/memory_store.py``).

Only :mod:`.disk` knows the on-disk layout; everything else talks to a :class:`.store.Store`.
"""
