"""Item features (text, image, attributes, collaborative) and the item-token pathway into the LLM."""
