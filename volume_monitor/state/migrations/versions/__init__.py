"""One file per schema revision of the state store, oldest first."""
