"""auth: every identity in SmartGym, and the tokens everybody else verifies."""
