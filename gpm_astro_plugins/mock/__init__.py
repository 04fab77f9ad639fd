"""Built-in plugin: mock."""
