"""Prompt templates as data files, rendered strictly."""
