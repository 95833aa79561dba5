"""The one wire contract between agent and controller (generated code committed)."""
