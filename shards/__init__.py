"""Tokenized WebDataset shards: the project's one tar module (`tar`: deterministic writer, tolerant and fast
readers), the tar shard writer (`writer`), the `manifest.json` beside them and its
`verify` (`manifest`), and the resumable streaming reader that packs them into training sequences (`reader`)."""
