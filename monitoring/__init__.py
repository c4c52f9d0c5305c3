"""monitoring: equipment registry and two-level fault detection (heartbeat + ping)."""
