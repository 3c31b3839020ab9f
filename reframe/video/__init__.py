"""video layer (see ARCHITECTURE.md)."""
