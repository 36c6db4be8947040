"""Built-in perturbations (see registry.yaml)."""
