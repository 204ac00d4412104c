"""xinshu (心数): student mental-health screening and crisis intervention.

Public API for plugin authors::

    from xinshu import hookimpl

    @hookimpl
    def register_scorers():
        return [MyScorer]

Built-in plugins import ``hookimpl`` from here too, so this module must not
import :mod:`xinshu.plugins` (the plugin manager imports plugins by name when
it is built).
"""

from xinshu.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
__version__ = "0.1.0"
