"""What every RideShare HTTP service shares: error model, request counter, app factory."""
