"""Built-in plugin: gpm_resnet."""
