"""Example mdp parser plugin (see docs/plugins.md)."""
