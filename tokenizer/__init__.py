"""Text and image tokenizers and the shared id space (later issues)."""
