"""The ``combined`` data source: labels from one registered source, images from another."""
