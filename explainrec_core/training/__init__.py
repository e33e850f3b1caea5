"""LoRA fine-tuning of the base LLM on prompt/response examples."""
