"""retrieval: see DESIGN.md's layout table; built by its own issue."""
