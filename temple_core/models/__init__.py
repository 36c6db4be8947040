"""Models: the backend contract every Video LLM family implements (:mod:`.backend`), the
shared machinery of the transformers-based backends (:mod:`.hf`), and the torchvision-free
helpers that build visual inputs and tiny test checkpoints (:mod:`.vision_tokens`)."""
