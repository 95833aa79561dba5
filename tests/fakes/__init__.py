"""Hand-written fakes of external systems, used by the tests (no mock patching)."""
