"""Guard against a Qt binding that corrupts Python's reference counts."""
import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal()


def test_signal_emit_keeps_the_refcount_of_true(qapp):
    # PySide6 6.12.0 lost one reference to True per emit(), and Python 3.11 then aborts
    # the whole app ("bool_dealloc") after a few hundred hovers or layer steps.
    emitter = _Emitter()
    before = sys.getrefcount(True)
    for _ in range(200):
        emitter.fired.emit()
    assert sys.getrefcount(True) - before >= -5
