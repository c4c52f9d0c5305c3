"""running: live runs over WebSocket, GPS smoothing, races and step rankings."""
