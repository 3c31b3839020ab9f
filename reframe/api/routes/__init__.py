"""api/routes layer (see ARCHITECTURE.md)."""
