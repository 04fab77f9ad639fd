"""Built-in plugin: colour_polynomial."""
