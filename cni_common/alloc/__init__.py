"""host-local's allocator, split by job: range config (:mod:`.config`), the store protocol (:mod:`.store`),
the round-robin allocator (:mod:`.allocator`), the upstream-compatible disk store (:mod:`.disk`) and an
in-memory store for tests (:mod:`.memory`).

Only :mod:`.disk` knows the on-disk layout; everything else talks to a :class:`.store.Store`.
"""
