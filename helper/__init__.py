"""helper: helper tasks with photos, daily limits, AI verdict intake, reward ledger."""
