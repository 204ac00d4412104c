"""Built-in plugins. Each module is registered through the ``xinshu``
entry-point group in ``setup.cfg``, exactly as a third-party plugin is."""
