"""Fork-server preload: warm the registry set-up (see mdp.forkserver_warmup)."""

from mdp.forkserver_warmup import warm

warm("registry")
