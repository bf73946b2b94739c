"""The Qt-free engine: models, capture, grids, export.

Everything the app can do, this package can do without Qt; the CLI, the tests, the
benchmarks and the GUI all call it. It must never import PySide6 or pyqtgraph.
"""
