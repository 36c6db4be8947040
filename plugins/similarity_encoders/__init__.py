"""Built-in similarity encoders (see registry.yaml)."""
