"""GLM, CogView and MoE training that streams the shards (later issues)."""
