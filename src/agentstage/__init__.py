"""agentstage: Staging and Production environments for AI agent configurations, on git."""

__version__ = "0.1.0"
