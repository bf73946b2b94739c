"""Circuits (issue 20): how a channel is built from the channels of an earlier layer.

graph.py (which captured layers feed which), contributions.py (gradient x activation of
every source channel, one target or all at once), check.py (switching sources off),
expanded.py (the photo-independent linear link), circuit.py (``fs.circuit``), trail.py and
picture.py (walking back to the first layer, as one picture).
"""
