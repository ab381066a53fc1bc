"""The desktop window (PySide6). Everything Qt lives here; the cores it drives do not import Qt."""
