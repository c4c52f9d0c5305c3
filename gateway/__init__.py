"""gateway: the single entry point: routing, token checks at the edge, breakers per upstream."""
