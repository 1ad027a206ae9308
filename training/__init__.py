"""Dataset building and QLoRA fine-tuning of the classifier model."""
