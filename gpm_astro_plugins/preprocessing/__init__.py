"""Built-in plugin: preprocessing."""
