"""Small pure pieces both the agent and the controller use (they import this and `protos`,
never each other): the injected clock, and burn-in message-size parsing."""
