"""Fork-server preload: warm the parser set-up (see mdp.forkserver_warmup)."""

from mdp.forkserver_warmup import warm

warm("parser")
