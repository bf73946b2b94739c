"""Issue 16, the window: at 1280x800 and 1024x768 every view is whole, every view is one
click away without tab scroll arrows, and the canvas has most of the width."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QSize
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSpinBox, QApplication, QSizePolicy,
                               QTabBar, QToolButton, QWidget)

SIZES = ((1280, 800), (1024, 768))


def effective_minimum(widget: QWidget) -> tuple[int, int]:
    """The smallest size a layout gives ``widget``: its minimum size where set, else its
    minimum size hint, nothing in a direction whose size policy is Ignored."""
    hint, minimum, policy = widget.minimumSizeHint(), widget.minimumSize(), widget.sizePolicy()
    width = minimum.width() or max(0, hint.width())
    height = minimum.height() or max(0, hint.height())
    ignored = QSizePolicy.Policy.Ignored
    return (0 if policy.horizontalPolicy() == ignored else width,
            0 if policy.verticalPolicy() == ignored else height)


def squeezed(window) -> list[str]:
    """Visible widgets smaller than the layout's minimum for them (cut)."""
    found = []
    for widget in window.findChildren(QWidget):
        parent = widget.parentWidget()
        if not widget.isVisible() or widget.isWindow():
            continue
        # the parts of a scroll area (viewport, headers, scroll bars), a spin box or a tab
        # bar are sized by it on purpose
        if isinstance(parent, (QAbstractScrollArea, QAbstractSpinBox, QTabBar)):
            continue
        width, height = effective_minimum(widget)
        size = QWidget.size(widget)  # (some widgets keep an int called `size`)
        if size.width() < width or size.height() < height:
            found.append(f"{type(widget).__name__} {widget.objectName()!r} {size.width()}x{size.height()}"
                         f" < {width}x{height} in {type(parent).__name__}")
    return found


def tab_scroll_buttons(window) -> list[str]:
    """Tab bars showing scroll arrows (a view or a panel out of reach)."""
    return [bar.objectName() or type(bar.parentWidget()).__name__
            for bar in window.findChildren(QTabBar) if bar.isVisible()
            and any(button.isVisible() for button in bar.findChildren(QToolButton))]


def canvas_share(window) -> float:
    return window.tabs.stack.width() / window.width()


def show_at(window, qtbot, size, index, wait_idle):
    window.resize(*size)
    window.tabs.setCurrentIndex(index)
    qtbot.waitUntil(lambda: window.tabs.currentWidget().isVisible())
    wait_idle(window)
    qtbot.wait(100)  # the layouts' own pass (a status text that changed as the work ended)
    assert window.size() == QSize(*size), f"the window cannot be made {size}: its minimum is too large"


@pytest.mark.parametrize("size", SIZES)
def test_every_view_is_whole_and_one_click_away(window, qtbot, wait_idle, size):
    for index in range(window.tabs.count()):
        show_at(window, qtbot, size, index, wait_idle)
        title = window.tabs.tabText(index)
        assert squeezed(window) == [], f"{title} at {size}"
        assert tab_scroll_buttons(window) == [], f"{title} at {size}"
        assert window.tabs.bar.buttons[index].isVisible() and window.tabs.bar.buttons[index].isChecked()
        if size == (1280, 800):
            assert canvas_share(window) >= 0.6, f"{title}: canvas {window.tabs.stack.width()} px"
    # every view's button is on screen at once, none scrolled away
    bar = window.tabs.bar
    assert all(button.isVisible() and bar.rect().contains(button.geometry()) for button in bar.buttons)


@pytest.mark.parametrize("size", SIZES)
def test_the_arithmetic_of_240_inputs_opens_whole_and_the_maps_keep_their_size(window, qtbot, wait_idle, size):
    from featurescope.gui.views.channel_view import MAPS_MINIMUM_HEIGHT

    show_at(window, qtbot, size, window.tabs.indexOf(window.channel_view), wait_idle)
    window.state.set_layer("blocks.4.project")  # a 1x1 convolution of 240 input channels
    window.channel_view.show_position(10, 10)
    panel = window.arithmetic_panel
    qtbot.waitUntil(lambda: panel.explanation is not None and panel.explanation.layer == "blocks.4.project",
                    timeout=60000)
    QApplication.processEvents()
    assert panel.products_table.rowCount() == 240 and panel.products_table.isVisible()
    assert window.channel_view.plots.height() >= MAPS_MINIMUM_HEIGHT
    assert squeezed(window) == []
