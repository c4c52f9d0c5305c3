"""notification: turns events into push notices and an in-app inbox."""
