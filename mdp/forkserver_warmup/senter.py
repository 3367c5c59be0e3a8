"""Fork-server preload: warm the senter set-up (see mdp.forkserver_warmup)."""

from mdp.forkserver_warmup import warm

warm("senter")
