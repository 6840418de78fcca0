"""Gene and cell-type text sources and text encoders."""
