"""The front desk: FastAPI routes that accept, validate and answer at once."""
