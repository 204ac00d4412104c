"""xinshu-example-plugin: an external xinshu plugin package, as a template.

The plugin module is :mod:`xinshu_example.plugin`, registered under the
``xinshu`` entry-point group as ``example`` (see ``setup.cfg``).
"""

__version__ = "0.1.0"
