"""WebDataset shard writer, manifest and streaming reader (later issues)."""
