"""What the app remembers between runs: typed access to a key-value store.

Model, weights, device, display options, recent files, last folders, window geometry
and dock layout. No Qt here: the store is anything with ``value(key, default)``,
``setValue(key, value)`` and ``sync()``; the app passes a QSettings
(:func:`featurescope.gui.app.open_settings`), tests their own INI file through it so they
never touch the user's settings, and a plain :class:`MemoryStore` serves Qt-free code.
"""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Union

from featurescope.core.models.registry import DEFAULT_MODEL
from featurescope.core.render.options import DisplayOptions

ORGANIZATION = "featurescope"
APPLICATION = "featurescope"
MAX_RECENT = 10
FILE_SUFFIXES = (".py", ".onnx", ".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def absolute(path: str) -> str:
    """A model or weights file made absolute (``file.py:factory`` keeps its factory), so a
    remembered spec still loads when the app starts in another folder. Catalogue names,
    "default", "none" and ``source:name`` specs pass unchanged."""
    text = str(path or "").strip()
    file, colon, factory = text.rpartition(":") if ".py:" in text else (text, "", "")
    if not file or re.match(r"^[A-Za-z][\w.+-]+:(?![\\/])", file):
        return text  # empty, or a source prefix such as timm:name (not C:\ or C:/)
    if not (file.lower().endswith(FILE_SUFFIXES) or Path(file).expanduser().is_file()):
        return text
    return str(Path(file).expanduser().resolve()) + (f":{factory}" if colon else "")


class MemoryStore:
    """A store that forgets at exit (Qt-free code and tests of this module)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def setValue(self, key: str, value: Any) -> None:  # noqa: N802 (QSettings' name)
        self.values[key] = value

    def sync(self) -> None:
        pass


class Settings:
    """Typed access to the app's settings store; one instance per main window."""

    def __init__(self, store: Any = None) -> None:
        self.qsettings = store if store is not None else MemoryStore()

    def sync(self) -> None:
        self.qsettings.sync()

    def _get(self, key: str, default: Any, type_: type) -> Any:
        """The value of ``key`` as ``type_``: an INI file gives text ("true", "42")."""
        raw = self.qsettings.value(key, default)
        if raw is None:
            return default
        try:
            if type_ is bool:
                return raw.strip().lower() in ("true", "1", "yes") if isinstance(raw, str) else bool(raw)
            return type_(raw)
        except (TypeError, ValueError):  # a hand-edited file with a bad value
            return default

    # -- model ----------------------------------------------------------------------
    def model_spec(self) -> dict[str, Any]:
        """The model to load on start: name, weights, device and custom-model fields."""
        return {
            "name": self._get("model/name", DEFAULT_MODEL, str) or DEFAULT_MODEL,
            "weights": self._get("model/weights", "default", str) or "default",
            "device": self._get("model/device", "auto", str) or "auto",
            "input_size": self._get("model/input_size", "", str),
            "mean": self._get("model/mean", "", str),
            "std": self._get("model/std", "", str),
        }

    def set_model_spec(self, name: str, weights: str, device: str, input_size: str = "",
                       mean: str = "", std: str = "") -> None:
        s = self.qsettings
        s.setValue("model/name", absolute(name))
        s.setValue("model/weights", absolute(weights))
        s.setValue("model/device", device)
        s.setValue("model/input_size", input_size)
        s.setValue("model/mean", mean)
        s.setValue("model/std", std)

    def trusted_weights(self) -> list[str]:
        """Weights files (absolute paths) the user trusts to be unpickled in full."""
        value = self.qsettings.value("model/trusted_weights", [])
        if isinstance(value, str):  # QSettings returns a lone string for one entry
            value = [value] if value else []
        return [str(v) for v in (value or []) if v]

    def set_weights_trusted(self, path: str, trusted: bool) -> None:
        path = absolute(path)
        others = [p for p in self.trusted_weights() if p != path]
        self.qsettings.setValue("model/trusted_weights", others + [path] if trusted else others)

    # -- display options --------------------------------------------------------------
    def display_options(self) -> DisplayOptions:
        base = DisplayOptions()
        values: dict[str, Any] = {}
        for f in fields(DisplayOptions):
            raw = self.qsettings.value(f"display/{f.name}", None)
            if raw is None or raw == "":
                continue
            default = getattr(base, f.name)
            try:
                if f.name == "columns":
                    values[f.name] = int(raw) or None
                elif f.name == "clip_percentile":
                    values[f.name] = float(raw) or None
                elif isinstance(default, bool):
                    values[f.name] = str(raw).lower() in ("true", "1")
                elif isinstance(default, int):
                    values[f.name] = max(1, int(raw))
                else:
                    values[f.name] = str(raw)
            except (TypeError, ValueError):
                continue
        return DisplayOptions(**{**base.__dict__, **values})

    def set_display_options(self, options: DisplayOptions) -> None:
        for f in fields(DisplayOptions):
            value = getattr(options, f.name)
            self.qsettings.setValue(f"display/{f.name}", "" if value is None else value)

    # -- files -----------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.qsettings.value("files/recent", [])
        if isinstance(value, str):  # QSettings returns a lone string for one entry
            value = [value] if value else []
        return [str(v) for v in (value or []) if v]

    def add_recent_file(self, path: Union[str, Path]) -> list[str]:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        recent = recent[:MAX_RECENT]
        self.qsettings.setValue("files/recent", recent)
        return recent

    def clear_recent_files(self) -> None:
        self.qsettings.setValue("files/recent", [])

    def last_folder(self, purpose: str) -> str:
        """Last folder used for ``purpose`` ("open", "export"), or the home folder."""
        folder = self._get(f"folders/{purpose}", "", str)
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    def set_last_folder(self, purpose: str, folder: Union[str, Path]) -> None:
        self.qsettings.setValue(f"folders/{purpose}", str(folder))

    # -- export options ------------------------------------------------------------------
    def annotate_exports(self) -> bool:
        return bool(self._get("export/annotate", True, bool))

    def set_annotate_exports(self, annotate: bool) -> None:
        self.qsettings.setValue("export/annotate", bool(annotate))

    # -- capture --------------------------------------------------------------------------
    def memory_budget(self) -> int:
        """Bytes a capture may keep (``capture/memory_budget``); beyond it, layers are
        stored as float16 or fetched again when shown."""
        from featurescope.core.capture.memory import DEFAULT_MEMORY_BUDGET

        value = self._get("capture/memory_budget", DEFAULT_MEMORY_BUDGET, int)
        return int(value) if isinstance(value, int) and value > 0 else DEFAULT_MEMORY_BUDGET

    def set_memory_budget(self, budget: int) -> None:
        self.qsettings.setValue("capture/memory_budget", int(budget))

    # -- window ------------------------------------------------------------------------
    def window_geometry(self) -> Optional[Any]:
        """The bytes the window saved (a QByteArray from QSettings), or None."""
        return self._window_bytes("window/geometry")

    def window_state(self) -> Optional[Any]:
        return self._window_bytes("window/state")

    def _window_bytes(self, key: str) -> Optional[Any]:
        value = self.qsettings.value(key)
        return None if value is None or isinstance(value, str) or not len(value) else value

    def set_window(self, geometry: Any, state: Any) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    def current_tab(self) -> int:
        return int(self._get("window/tab", 0, int))

    def set_current_tab(self, index: int) -> None:
        self.qsettings.setValue("window/tab", int(index))
