"""The generation engine: devices, models, attention, generation. No Qt here.

torch and diffusers are imported lazily inside functions so that importing this package is cheap
(the window shows before the heavy libraries load).
"""
