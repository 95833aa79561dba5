"""Small pure pieces both the agent and the controller use (they import this and `protos`,
never each other): the injected clock, the severity vocabulary, burn-in size parsing."""
