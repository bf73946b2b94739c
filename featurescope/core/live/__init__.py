"""Live feature maps: frame sources (camera, video file, generated), the newest-frame-wins
grabber and the live loop. Qt-free; the GUI runs one frame per worker job."""
