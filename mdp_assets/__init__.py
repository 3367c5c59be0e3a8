"""The Dagster asset graph of mdp: raw_documents → … → retrieval_eval."""
