"""PyTorch training on the shards: GLM blank infilling and CogView text-to-image models (`glm_model`,
`cogview_model`, with shared layers and MoE experts in `layers`, `moe`), configs, batches streamed from the shards
(`data`), the resumable training loop with validation and DDP (`loop`), and CogView image sampling (`sample`)."""
