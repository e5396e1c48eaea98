"""Model worker processes (one per tensor-parallel rank) and the engine's handle on them."""
