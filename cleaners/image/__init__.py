"""Image-text records and the per-record image and caption checks (Pillow; no Beam)."""
