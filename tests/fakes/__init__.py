"""Shared fakes for tests: stand-ins for the services bgtasks talks to (the OpenAI-compatible model API)."""
