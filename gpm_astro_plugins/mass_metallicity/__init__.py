"""Built-in plugin: mass_metallicity."""
