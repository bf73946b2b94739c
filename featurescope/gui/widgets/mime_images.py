"""What a drop or the clipboard offers as an image: a file, encoded pixels, or nothing.

The main window (image A) and the compare tab (image B) accept the same things; this is
the one place that reads them out of a QMimeData.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

from PySide6.QtCore import QBuffer, QIODevice, QUrl

#: ("path", "/home/me/cat.jpg") or ("bytes", b"\x89PNG...")
ImageOffer = tuple[str, Union[str, bytes]]


def image_offer(mime: Any) -> Optional[ImageOffer]:
    """An image file (URL, or a path as text) or image data from ``mime``; None if neither."""
    if mime is None:
        return None
    if mime.hasUrls():
        for url in mime.urls():
            if url.isLocalFile() and Path(url.toLocalFile()).is_file():
                return "path", url.toLocalFile()
    if mime.hasImage():
        image = mime.imageData()
        if image is not None and not image.isNull():
            # Re-encoded as PNG so the engine opens it like any file (load_image's checks).
            buffer = QBuffer()
            buffer.open(QIODevice.OpenModeFlag.WriteOnly)
            image.save(buffer, "PNG")
            return "bytes", bytes(buffer.data())
    if mime.hasText():
        text = mime.text().strip().strip('"').strip("'")
        path = QUrl(text).toLocalFile() if text.startswith("file:") else text
        if path and "\n" not in path and Path(path).expanduser().is_file():
            return "path", str(Path(path).expanduser())
    return None


def can_drop(mime: Any) -> bool:
    """Whether a drag could carry an image (checked cheaply, before the drop)."""
    return mime.hasUrls() or mime.hasImage()


def deliver(mime: Any, open_path: Callable[[str], None],
            open_bytes: Callable[[bytes, str], None]) -> bool:
    """Hand what ``mime`` offers to ``open_path(path)`` or ``open_bytes(data, "clipboard")``;
    False when it offers no image."""
    offer = image_offer(mime)
    if offer is None:
        return False
    kind, value = offer
    if kind == "path":
        open_path(value)
    else:
        open_bytes(value, "clipboard")
    return True


class ImageDropTarget:
    """Drag-and-drop of images for a QWidget subclass (put it first among the bases).

    The widget defines ``accept_mime(mime) -> bool`` (take the image, or say no) and
    ``drop_refused()`` (tell the user what can be dropped).
    """

    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if can_drop(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self.dragEnterEvent(event)

    def dropEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if self.accept_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            self.drop_refused()
            event.ignore()
