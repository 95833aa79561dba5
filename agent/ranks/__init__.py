"""Training ranks as the node agent sees them: the rank-side progress reporter (stdlib only)
and the agent-side listener that collects what ranks report."""
