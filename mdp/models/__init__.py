"""MLX model definitions (one readable file per architecture)."""

from mdp.blas import activate_openblas

# mlx.core binds its BLAS when first imported: an optimised one must be loaded before any model
# file imports it (mdp/blas.py). Entry points have done it already (mdp.runtime.configure_process).
activate_openblas()
