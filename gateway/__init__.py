"""Version-aware LLM routing gateway: one OpenAI-compatible endpoint in front of model versions."""

__version__ = "0.1.0"
