"""The moderation web service: FastAPI app, settings and the model engine."""
