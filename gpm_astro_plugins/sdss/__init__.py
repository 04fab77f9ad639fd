"""Built-in plugin: sdss."""
