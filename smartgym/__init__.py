"""The SmartGym launcher: ``smartgym up``, ``smartgym serve SERVICE``, ``smartgym migrate``."""
