"""Helpers the notebooks import: exercise checks, pictures, and a local server for the API."""
