"""Built-in plugin: legacysurvey."""
