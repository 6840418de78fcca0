"""The data registry (pooch): gene tables, dictionaries, checkpoints."""

__all__: list[str] = []
