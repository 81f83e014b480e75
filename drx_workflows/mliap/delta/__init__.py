"""Δ-learning on a frozen pretrained universal potential (the ``delta`` backend): bases, residual heads, the backend."""
