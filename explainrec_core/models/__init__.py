"""Base LLM resolution and LoRA adapters."""
