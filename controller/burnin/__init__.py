"""Burn-in orchestration and judgement on the controller side."""
