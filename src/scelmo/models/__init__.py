"""Trainable and pretrained models in the scvi-tools style."""

__all__: list[str] = []
