"""Token validation, SMART scopes and patient compartments."""
