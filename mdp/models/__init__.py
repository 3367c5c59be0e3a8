"""MLX model definitions (one readable file per architecture)."""
