"""Built-in shot detectors (see registry.yaml)."""
