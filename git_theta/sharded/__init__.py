"""Hugging Face sharded checkpoints: `model-0000k-of-0000n.safetensors` plus the
`model.safetensors.index.json` whose `weight_map` says which shard holds each parameter."""
