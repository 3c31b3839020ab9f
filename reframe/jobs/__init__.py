"""jobs layer (see ARCHITECTURE.md)."""
