"""Dialogue records (`records`), the per-session cleaning rules (`rules`, LCCC-style), session splitting and the
units replies are compared in (`sessions`), and thread dumps to sessions (`threads`). No Beam here."""
