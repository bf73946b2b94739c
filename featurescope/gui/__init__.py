"""The desktop app (PySide6 + pyqtgraph). Presents what featurescope.core computes."""
