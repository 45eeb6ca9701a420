"""The warm path: a preloaded process of the build forks one child per plugin call (docs/packaging.md).

:mod:`.server` is the process, :mod:`.child` one call, :mod:`.context` what caller and process must share.
The launcher's side is ``cni_common/bundle/warm.h``. The library knows no plugin: ``plugins/warm.py`` says what
to preload and how to run a call.
"""
