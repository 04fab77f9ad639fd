"""Built-in plugin: datalab."""
